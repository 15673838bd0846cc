package market

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"
	"unicode/utf8"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Table is a table to draw as a picture, for chat clients that cannot show a wide fixed-width table as text
// (a phone wraps it): a title, a header, rows of cells, and notes under it.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
	// Right aligns a column's cells right (figures); Mark draws a row highlighted (a scan's picks), Muted
	// in grey (rows left out of a ranking).
	Right []bool
	Mark  []bool
	Muted []bool
	// Notes are paragraphs under the table (a legend, why rows were picked), wrapped to its width.
	Notes []string
	// Width in pixels; 0 means 1080 (a phone's width, so the text stays readable once shown whole).
	Width int
}

var (
	tableInk     = color.RGBA{R: 33, G: 37, B: 41, A: 255}
	tableHeadBg  = color.RGBA{R: 31, G: 72, B: 125, A: 255}
	tableStripe  = color.RGBA{R: 242, G: 244, B: 247, A: 255}
	tableMarked  = color.RGBA{R: 255, G: 243, B: 196, A: 255}
	tableMuted   = color.RGBA{R: 90, G: 96, B: 104, A: 255}
	tableMaxRows = 200
)

// TablePNG draws t as a PNG: the header on a dark band, rows striped, marked rows highlighted, cells wrapped
// at word boundaries when a column would take more than its share of the width.
func TablePNG(t Table) ([]byte, error) {
	if len(t.Header) == 0 {
		return nil, errors.New("table: no columns")
	}
	if len(t.Rows) > tableMaxRows {
		return nil, fmt.Errorf("table: %d rows, at most %d", len(t.Rows), tableMaxRows)
	}
	wpx := t.Width
	if wpx == 0 {
		wpx = 1080
	}
	if wpx < 300 || wpx > 4000 {
		return nil, fmt.Errorf("table: width %d outside 300..4000 pixels", wpx)
	}
	const ptPerPx = 72.0 / vgimg.DefaultDPI
	width := vg.Length(float64(wpx) * ptPerPx)
	style := func(size vg.Length, ink color.Color) text.Style {
		return text.Style{Color: ink, Font: font.From(font.Font{Typeface: "Liberation", Variant: "Sans"}, size), Handler: plot.DefaultTextHandler}
	}
	cell, head, title, note := style(17, tableInk), style(17, color.White), style(21, tableInk), style(14, tableMuted)
	pad, margin := vg.Length(7), vg.Length(12)

	// Column widths: each column's widest cell, shrunk (its cells wrapped) when all together pass the width.
	n := len(t.Header)
	natural := make([]vg.Length, n)
	for i, h := range t.Header {
		natural[i] = head.Width(h)
	}
	for _, row := range t.Rows {
		for i := 0; i < n && i < len(row); i++ {
			natural[i] = max(natural[i], cell.Width(row[i]))
		}
	}
	room := width - 2*margin - vg.Length(n)*2*pad
	cols := fitColumns(natural, room)

	// Lines per cell, and the height of everything, in points.
	lineH := cell.FontExtents().Height
	wrapped := make([][][]string, len(t.Rows))
	rowH := make([]vg.Length, len(t.Rows))
	for r, row := range t.Rows {
		wrapped[r] = make([][]string, n)
		lines := 1
		for i := range n {
			c := ""
			if i < len(row) {
				c = row[i]
			}
			wrapped[r][i] = wrapText(cell, c, cols[i])
			lines = max(lines, len(wrapped[r][i]))
		}
		rowH[r] = vg.Length(lines)*lineH + 2*pad
	}
	headLines := make([][]string, n)
	headRows := 1
	for i, h := range t.Header {
		headLines[i] = wrapText(head, h, cols[i])
		headRows = max(headRows, len(headLines[i]))
	}
	headH := vg.Length(headRows)*lineH + 2*pad
	var titleLines, noteLines []string
	if t.Title != "" {
		titleLines = wrapText(title, t.Title, width-2*margin)
	}
	for _, p := range t.Notes {
		noteLines = append(noteLines, wrapText(note, p, width-2*margin)...)
	}
	height := margin + vg.Length(len(titleLines))*title.FontExtents().Height + pad + headH + margin
	for _, h := range rowH {
		height += h
	}
	if len(noteLines) > 0 {
		height += pad + vg.Length(len(noteLines))*note.FontExtents().Height
	}
	hpx := int(float64(height)/ptPerPx) + 1
	if hpx > 8000 {
		return nil, fmt.Errorf("table: %d pixels high, at most 8000", hpx)
	}

	img := image.NewRGBA(image.Rect(0, 0, wpx, hpx))
	canvas := vgimg.NewWith(vgimg.UseImage(img))
	dc := draw.New(canvas)
	fill := func(x0, y0, x1, y1 vg.Length, c color.Color) {
		dc.FillPolygon(c, []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
	}
	fill(0, 0, dc.Max.X, dc.Max.Y, color.White)
	top := dc.Max.Y - margin // y grows upwards: draw from the top down
	for _, l := range titleLines {
		top -= title.FontExtents().Height
		dc.FillText(title, vg.Point{X: margin, Y: top + title.FontExtents().Descent}, l)
	}
	top -= pad
	left, right := margin, dc.Max.X-margin
	drawRow := func(lines [][]string, h vg.Length, sty text.Style, bg color.Color, right0 []bool) {
		if bg != nil {
			fill(left, top-h, right, top, bg)
		}
		x := left
		for i := range n {
			y := top - pad
			for _, l := range lines[i] {
				y -= lineH
				at := x + pad
				if i < len(right0) && right0[i] {
					at = x + pad + cols[i] - sty.Width(l)
				}
				dc.FillText(sty, vg.Point{X: at, Y: y + sty.FontExtents().Descent}, l)
			}
			x += cols[i] + 2*pad
		}
		top -= h
	}
	drawRow(headLines, headH, head, tableHeadBg, t.Right)
	for r := range t.Rows {
		var bg color.Color
		switch {
		case r < len(t.Mark) && t.Mark[r]:
			bg = tableMarked
		case r%2 == 1:
			bg = tableStripe
		}
		sty := cell
		if r < len(t.Muted) && t.Muted[r] {
			sty = style(17, tableMuted)
		}
		drawRow(wrapped[r], rowH[r], sty, bg, t.Right)
	}
	if len(noteLines) > 0 {
		top -= pad
		for _, l := range noteLines {
			top -= note.FontExtents().Height
			dc.FillText(note, vg.Point{X: margin, Y: top + note.FontExtents().Descent}, l)
		}
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, canvas.Image()); err != nil {
		return nil, fmt.Errorf("table: encoding png: %w", err)
	}
	return buf.Bytes(), nil
}

// fitColumns gives each column its natural width when they all fit in room; otherwise the widest columns are
// narrowed to a common cap (their cells then wrap), so narrow figure columns are never squeezed.
func fitColumns(natural []vg.Length, room vg.Length) []vg.Length {
	out := append([]vg.Length(nil), natural...)
	var total vg.Length
	for _, w := range out {
		total += w
	}
	if total <= room {
		return out
	}
	// The largest cap c with sum(min(w, c)) <= room.
	lo, hi := vg.Length(0), room
	for range 40 {
		c := (lo + hi) / 2
		var sum vg.Length
		for _, w := range natural {
			sum += min(w, c)
		}
		if sum <= room {
			lo = c
		} else {
			hi = c
		}
	}
	for i, w := range natural {
		out[i] = min(w, lo)
	}
	return out
}

// wrapText breaks s into lines no wider than w at spaces; a word wider than w is cut.
func wrapText(sty text.Style, s string, w vg.Length) []string {
	if s == "" {
		return []string{""}
	}
	words := strings.Fields(s)
	var lines []string
	cur := ""
	for _, word := range words {
		next := word
		if cur != "" {
			next = cur + " " + word
		}
		if sty.Width(next) <= w || cur == "" {
			cur = next
			for sty.Width(cur) > w && len(cur) > 1 { // one word too wide: cut it
				cut := len(cur) - 1
				for cut > 1 && (sty.Width(cur[:cut]) > w || !utf8.RuneStart(cur[cut])) {
					cut--
				}
				lines = append(lines, cur[:cut])
				cur = cur[cut:]
			}
			continue
		}
		lines = append(lines, cur)
		cur = word
	}
	return append(lines, cur)
}
