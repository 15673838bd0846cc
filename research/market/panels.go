package market

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Panel colours: the close in near-black, averages in colours that stay apart when shrunk, green and red
// for up and down.
var (
	inkClose  = color.RGBA{R: 20, G: 20, B: 20, A: 255}
	inkSMA20  = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	inkSMA50  = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	inkSMA200 = color.RGBA{R: 148, G: 103, B: 189, A: 255}
	inkBand   = color.RGBA{R: 120, G: 120, B: 120, A: 255}
	inkBandBg = color.RGBA{R: 228, G: 228, B: 236, A: 255}
	inkUp     = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	inkDown   = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	inkEvent  = color.RGBA{R: 23, G: 140, B: 160, A: 255}
)

// styleAxes sets fonts big enough to read on a phone after a chat client shrinks the picture.
func styleAxes(p *plot.Plot, scale float64) {
	size := vg.Points(15 * scale)
	p.X.Tick.Label.Font.Size, p.Y.Tick.Label.Font.Size = size, size
	p.X.Label.TextStyle.Font.Size, p.Y.Label.TextStyle.Font.Size = size, size
	p.Legend.TextStyle.Font.Size = size
	p.X.LineStyle.Width, p.Y.LineStyle.Width = vg.Points(1), vg.Points(1)
}

// panelChart draws one series as four panels on one date axis: price with SMA 20/50/200 and Bollinger
// bands (20, 2σ), with markers for the 52-week high and low, SMA 50/200 crosses, dividends and splits, and
// the signals of the last bar; volume bars (green up day, red down day) with their 20-day average; RSI 14
// with 30 and 70; MACD (12, 26, 9) with its signal line and histogram. Averages are computed from all bars,
// so they are right from the window's first day when the series has the history.
func panelChart(s Series, from time.Time, opts ChartOptions, w, h int) ([]byte, error) {
	c, v := s.Closes(), s.Volumes()
	d := s.Precision()
	price := plot.New()
	styleAxes(price, 1)
	price.X.Tick.Marker = monthTicks{}
	price.Add(plotter.NewGrid())
	price.Legend.Top, price.Legend.Left = true, true
	price.Y.Label.Text = "price"
	if s.Currency != "" {
		price.Y.Label.Text += " (" + s.Currency + ")"
	}
	up, low := Bollinger(c, 20, 2)
	if band := bandPolygon(s.Bars, up, low, from); band != nil {
		price.Add(band)
	}
	drawn := 0
	for _, ln := range []struct {
		name  string
		ys    []float64
		width float64
		col   color.Color
		dash  bool
		close bool
	}{
		{"Bollinger 20, 2σ", up, 1, inkBand, true, false},
		{"", low, 1, inkBand, true, false},
		{"SMA 200", SMA(c, 200), 2, inkSMA200, false, false},
		{"SMA 50", SMA(c, 50), 2, inkSMA50, false, false},
		{"SMA 20", SMA(c, 20), 1.6, inkSMA20, false, false},
		{fmt.Sprintf("close %s", FormatPrice(c[len(c)-1], d)), c, 2.4, inkClose, false, true},
	} {
		xys := windowXYs(s.Bars, ln.ys, from)
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("chart: %s: %w", ln.name, err)
		}
		l.LineStyle.Width, l.LineStyle.Color = vg.Points(ln.width), ln.col
		if ln.dash {
			l.LineStyle.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		price.Add(l)
		if ln.name != "" {
			price.Legend.Add(ln.name, l)
		}
		if ln.close {
			drawn++
		}
	}
	if drawn == 0 {
		return nil, fmt.Errorf("chart: %s: no bars in the window", s.Symbol)
	}
	first, last := windowBounds(s.Bars, from)
	ind := Compute(s, 0)
	// 52-week high and low as dashed lines across the window, labelled at the left.
	var labels, levels plotter.XYLabels
	if ind.High52w.OK && ind.Low52w.OK {
		for _, lv := range []struct {
			name string
			y    float64
			col  color.Color
		}{{"52w high", ind.High52w.V, inkUp}, {"52w low", ind.Low52w.V, inkDown}} {
			l, _ := plotter.NewLine(plotter.XYs{{X: unix(s.Bars[first].Date), Y: lv.y}, {X: unix(s.Bars[last].Date), Y: lv.y}})
			l.LineStyle.Width, l.LineStyle.Color, l.LineStyle.Dashes = vg.Points(1.2), lv.col, []vg.Length{vg.Points(2), vg.Points(3)}
			price.Add(l)
			// Labelled mid-window, above the line, clear of the legend (top left) and the last close (right).
			mid := s.Bars[(first+last)/2].Date
			levels.XYs = append(levels.XYs, plotter.XY{X: unix(mid), Y: lv.y})
			levels.Labels = append(levels.Labels, fmt.Sprintf("%s %s", lv.name, FormatPrice(lv.y, d)))
		}
	}
	// SMA 50/200 crosses in the window: a triangle at the cross, up green (golden), down red (death).
	f50, s200 := SMA(c, 50), SMA(c, 200)
	var golden, death plotter.XYs
	for i := max(first, 1); i <= last; i++ {
		if math.IsNaN(s200[i-1]) || math.IsNaN(f50[i-1]) {
			continue
		}
		switch {
		case f50[i-1] <= s200[i-1] && f50[i] > s200[i]:
			golden = append(golden, plotter.XY{X: unix(s.Bars[i].Date), Y: f50[i]})
		case f50[i-1] >= s200[i-1] && f50[i] < s200[i]:
			death = append(death, plotter.XY{X: unix(s.Bars[i].Date), Y: f50[i]})
		}
	}
	addMarks(price, golden, draw.TriangleGlyph{}, inkUp, "golden cross")
	addMarks(price, death, draw.TriangleGlyph{}, inkDown, "death cross")
	// Dividends and splits: a mark on the close of the ex-date, labelled D or S.
	var evs plotter.XYs
	for _, a := range s.Actions {
		for i := first; i <= last; i++ {
			if s.Bars[i].Date.Equal(a.Date) {
				evs = append(evs, plotter.XY{X: unix(a.Date), Y: c[i]})
				labels.XYs = append(labels.XYs, plotter.XY{X: unix(a.Date), Y: c[i]})
				labels.Labels = append(labels.Labels, map[string]string{"dividend": " D", "split": " S"}[a.Kind])
			}
		}
	}
	addMarks(price, evs, draw.SquareGlyph{}, inkEvent, "dividend (D) / split (S)")
	// The last bar's signals, named next to its close.
	if sigs := Signals(s, ind); len(sigs) > 0 {
		names := ""
		for i, sg := range sigs {
			if i > 0 {
				names += ", "
			}
			names += sg.Kind
		}
		pt := plotter.XYs{{X: unix(s.Bars[last].Date), Y: c[last]}}
		addMarks(price, pt, draw.RingGlyph{}, inkDown, "signal: "+names)
	}
	for _, set := range []plotter.XYLabels{labels, levels} {
		if len(set.XYs) == 0 {
			continue
		}
		if lb, err := plotter.NewLabels(set); err == nil {
			for i := range lb.TextStyle {
				lb.TextStyle[i].Font.Size = vg.Points(14)
				lb.TextStyle[i].Color = inkEvent
				lb.TextStyle[i].YAlign = draw.YBottom
			}
			price.Add(lb)
		}
	}
	// Headroom above the data for the legend, so it covers no price.
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, ys := range [][]float64{c, up, low} {
		for i := first; i <= last; i++ {
			if !math.IsNaN(ys[i]) {
				ymin, ymax = math.Min(ymin, ys[i]), math.Max(ymax, ys[i])
			}
		}
	}
	if ind.High52w.OK {
		ymax, ymin = math.Max(ymax, ind.High52w.V), math.Min(ymin, ind.Low52w.V)
	}
	price.Y.Min, price.Y.Max = ymin-0.03*(ymax-ymin), ymax+0.45*(ymax-ymin)

	vol := plot.New()
	styleAxes(vol, 1)
	vol.X.Tick.Marker = monthTicks{}
	vol.Add(plotter.NewGrid())
	vol.Y.Label.Text = "volume"
	vol.Y.Tick.Marker = siTicks{}
	vol.Add(&barPlot{bars: s.Bars, from: first, to: last, value: v, colour: func(i int) color.Color {
		if i > 0 && c[i] < c[i-1] {
			return inkDown
		}
		return inkUp
	}})
	if xys := windowXYs(s.Bars, SMA(v, 20), from); len(xys) > 0 {
		l, _ := plotter.NewLine(xys)
		l.LineStyle.Width, l.LineStyle.Color = vg.Points(1.6), inkClose
		vol.Add(l)
		vol.Legend.Add("20-day average", l)
		vol.Legend.Top, vol.Legend.Left = true, true
	}
	vol.Y.Min = 0

	rsi := plot.New()
	styleAxes(rsi, 1)
	rsi.X.Tick.Marker = monthTicks{}
	rsi.Add(plotter.NewGrid())
	rsi.Y.Label.Text = "RSI 14"
	rsi.Y.Min, rsi.Y.Max = 0, 100
	rsi.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 30, Label: "30"}, {Value: 50, Label: "50"}, {Value: 70, Label: "70"}})
	for _, lv := range []float64{30, 70} {
		l, _ := plotter.NewLine(plotter.XYs{{X: unix(s.Bars[first].Date), Y: lv}, {X: unix(s.Bars[last].Date), Y: lv}})
		l.LineStyle.Width, l.LineStyle.Color, l.LineStyle.Dashes = vg.Points(1), inkBand, []vg.Length{vg.Points(4), vg.Points(3)}
		rsi.Add(l)
	}
	if xys := windowXYs(s.Bars, RSI(c, 14), from); len(xys) > 0 {
		l, _ := plotter.NewLine(xys)
		l.LineStyle.Width, l.LineStyle.Color = vg.Points(1.8), inkSMA200
		rsi.Add(l)
	}

	macd := plot.New()
	styleAxes(macd, 1)
	macd.X.Tick.Marker = monthTicks{}
	macd.Add(plotter.NewGrid())
	macd.Y.Label.Text = "MACD 12,26,9"
	line, sig, hist := MACD(c, 12, 26, 9)
	macd.Add(&barPlot{bars: s.Bars, from: first, to: last, value: hist, colour: func(i int) color.Color {
		if hist[i] < 0 {
			return inkDown
		}
		return inkUp
	}})
	for _, ln := range []struct {
		name string
		ys   []float64
		col  color.Color
	}{{"MACD", line, inkSMA50}, {"signal", sig, inkSMA20}} {
		if xys := windowXYs(s.Bars, ln.ys, from); len(xys) > 0 {
			l, _ := plotter.NewLine(xys)
			l.LineStyle.Width, l.LineStyle.Color = vg.Points(1.8), ln.col
			macd.Add(l)
			macd.Legend.Add(ln.name, l)
		}
	}
	macd.Legend.Top, macd.Legend.Left = true, true
	macd.X.Label.Text = "date"

	desc := opts.Title
	if desc == "" {
		desc = s.Symbol + ": close, SMA 20/50/200, Bollinger 20,2; volume; RSI 14; MACD"
	}
	price.Title.Text = chartTitle(desc, []Series{s})
	price.Title.TextStyle.Font.Size = vg.Points(17)
	if s.Synthetic {
		price.Title.TextStyle.Color = color.RGBA{R: 200, A: 255}
	}
	// Every panel spans the same dates, so their date axes line up; only the bottom one names them.
	lo0, hi0 := unix(s.Bars[first].Date), unix(s.Bars[last].Date)
	for _, p := range []*plot.Plot{price, vol, rsi, macd} {
		p.X.Min, p.X.Max = lo0, hi0
		if p != macd {
			p.X.Tick.Marker = monthTicks{unlabelled: true}
		}
	}
	return drawPanels(w, h, []*plot.Plot{price, vol, rsi, macd}, []float64{0.52, 0.14, 0.15, 0.19})
}

// drawPanels stacks plots top to bottom at the given shares of the height, their data areas aligned on the
// left and right so that one date sits at one x in every panel.
func drawPanels(w, h int, plots []*plot.Plot, shares []float64) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	canvas := vgimg.NewWith(vgimg.UseImage(img))
	dc := draw.New(canvas)
	height := dc.Max.Y - dc.Min.Y
	subs := make([]draw.Canvas, len(plots))
	top := dc.Max.Y
	for i := range plots {
		ph := vg.Length(shares[i]) * height
		subs[i] = draw.Crop(dc, 0, 0, top-ph-dc.Min.Y, top-dc.Max.Y)
		top -= ph
	}
	var left, right vg.Length
	for i, p := range plots {
		dca := p.DataCanvas(subs[i])
		left = max(left, dca.Min.X-subs[i].Min.X)
		right = max(right, subs[i].Max.X-dca.Max.X)
	}
	for i, p := range plots {
		dca := p.DataCanvas(subs[i])
		l, r := dca.Min.X-subs[i].Min.X, subs[i].Max.X-dca.Max.X
		p.Draw(draw.Crop(subs[i], left-l, -(right - r), 0, 0))
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, canvas.Image()); err != nil {
		return nil, fmt.Errorf("chart: encoding png: %w", err)
	}
	return buf.Bytes(), nil
}

func unix(t time.Time) float64 { return float64(t.Unix()) }

// windowBounds returns the indices of the first and last bars dated after from (all bars for a zero from).
func windowBounds(bars []Bar, from time.Time) (first, last int) {
	first = 0
	for first < len(bars)-1 && !from.IsZero() && !bars[first].Date.After(from) {
		first++
	}
	return first, len(bars) - 1
}

func addMarks(p *plot.Plot, xys plotter.XYs, shape draw.GlyphDrawer, col color.Color, name string) {
	if len(xys) == 0 {
		return
	}
	sc, err := plotter.NewScatter(xys)
	if err != nil {
		return
	}
	sc.GlyphStyle.Shape, sc.GlyphStyle.Color, sc.GlyphStyle.Radius = shape, col, vg.Points(7)
	p.Add(sc)
	p.Legend.Add(name, sc)
}

// bandPolygon fills the area between the Bollinger bands in the window.
func bandPolygon(bars []Bar, up, low []float64, from time.Time) *plotter.Polygon {
	var top, bottom plotter.XYs
	for i, b := range bars {
		if (!from.IsZero() && !b.Date.After(from)) || math.IsNaN(up[i]) {
			continue
		}
		top = append(top, plotter.XY{X: unix(b.Date), Y: up[i]})
		bottom = append(bottom, plotter.XY{X: unix(b.Date), Y: low[i]})
	}
	if len(top) < 2 {
		return nil
	}
	for i := len(bottom) - 1; i >= 0; i-- {
		top = append(top, bottom[i])
	}
	poly, err := plotter.NewPolygon(top)
	if err != nil {
		return nil
	}
	poly.Color, poly.LineStyle.Width = inkBandBg, 0
	return poly
}

// barPlot draws one vertical bar per trading day from zero to value, coloured per bar.
type barPlot struct {
	bars     []Bar
	from, to int
	value    []float64
	colour   func(i int) color.Color
}

// Plot implements plot.Plotter.
func (b *barPlot) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	n := b.to - b.from + 1
	width := (c.Max.X - c.Min.X) / vg.Length(max(n, 1)) * 0.7
	for i := b.from; i <= b.to; i++ {
		if math.IsNaN(b.value[i]) {
			continue
		}
		x := trX(unix(b.bars[i].Date))
		y0, y1 := trY(0), trY(b.value[i])
		c.FillPolygon(b.colour(i), []vg.Point{{X: x - width/2, Y: y0}, {X: x + width/2, Y: y0}, {X: x + width/2, Y: y1}, {X: x - width/2, Y: y1}})
	}
}

// DataRange implements plot.DataRanger.
func (b *barPlot) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = unix(b.bars[b.from].Date), unix(b.bars[b.to].Date)
	for i := b.from; i <= b.to; i++ {
		if !math.IsNaN(b.value[i]) {
			ymin, ymax = math.Min(ymin, b.value[i]), math.Max(ymax, b.value[i])
		}
	}
	return xmin, xmax, ymin, ymax
}

// siTicks labels a volume axis in thousands, millions or billions.
type siTicks struct{}

// Ticks implements plot.Ticker.
func (siTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label == "" {
			continue
		}
		v := ticks[i].Value
		switch {
		case math.Abs(v) >= 1e9:
			ticks[i].Label = fmt.Sprintf("%gB", v/1e9)
		case math.Abs(v) >= 1e6:
			ticks[i].Label = fmt.Sprintf("%gM", v/1e6)
		case math.Abs(v) >= 1e3:
			ticks[i].Label = fmt.Sprintf("%gk", v/1e3)
		}
	}
	return ticks
}
