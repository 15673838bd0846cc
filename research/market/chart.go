package market

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// ChartOptions shape a chart. The zero value draws every bar given, at 1080x1350 pixels for one series
// (four panels, portrait, for a phone) and 1000x560 for several.
type ChartOptions struct {
	// Window is the span shown, ending at the latest as-of among the series; 0 shows every bar. Moving
	// averages are still computed from all the bars, so SMA 200 is drawn from the window's first day when
	// the series has the history for it.
	Window time.Duration
	// Width and Height in pixels; 0 means 1000 and 560.
	Width, Height int
	// Title replaces the generated description of what is drawn. The as-of date, the sources and, for
	// synthetic data, "SYNTHETIC DATA" are always added.
	Title string
}

// chartColors are distinct on white and survive being shrunk in a chat client. The first five lines are
// solid, the next five dashed (lineStyle), and the colours are split so that within each group no two
// are close (brown and grey, red and brown, blue and cyan are in different groups): ten lines can be
// told apart.
var chartColors = []color.RGBA{
	{R: 31, G: 119, B: 180, A: 255},  // blue
	{R: 255, G: 127, B: 14, A: 255},  // orange
	{R: 44, G: 160, B: 44, A: 255},   // green
	{R: 148, G: 103, B: 189, A: 255}, // purple
	{R: 140, G: 86, B: 75, A: 255},   // brown
	{R: 214, G: 39, B: 40, A: 255},   // red, dashed
	{R: 227, G: 119, B: 194, A: 255}, // pink, dashed
	{R: 127, G: 127, B: 127, A: 255}, // grey, dashed
	{R: 188, G: 189, B: 34, A: 255},  // olive, dashed
	{R: 23, G: 190, B: 207, A: 255},  // cyan, dashed
}

// lineStyle is the colour and dash pattern of a performance chart's i-th line (nil dashes: solid).
func lineStyle(i int) (color.RGBA, []vg.Length) {
	i %= len(chartColors)
	if i < 5 {
		return chartColors[i], nil
	}
	return chartColors[i], []vg.Length{vg.Points(7), vg.Points(3.5)}
}

// Chart draws series as a PNG. One series is drawn as four panels sharing a date axis (see panelChart);
// several are drawn as performance rebased to 100 on each one's first bar in the window, so that different
// price levels compare, each line labelled with its change over the window.
// The title carries the as-of date and the source, and starts with "SYNTHETIC DATA" when any series is
// synthetic, so the picture cannot travel without its caveat.
func Chart(series []Series, opts ChartOptions) ([]byte, error) {
	if len(series) == 0 {
		return nil, errors.New("chart: no series")
	}
	w, h := opts.Width, opts.Height
	if w == 0 {
		w = 1000
		if len(series) == 1 {
			w = 1080
		}
	}
	if h == 0 {
		h = 560
		if len(series) == 1 {
			h = 1350 // four panels, portrait: a phone shows it whole
		}
	}
	if w < 100 || h < 100 || w > 4000 || h > 4000 {
		return nil, fmt.Errorf("chart: size %dx%d outside 100..4000 pixels", w, h)
	}

	var asOf time.Time
	synthetic := false
	for _, s := range series {
		if len(s.Bars) == 0 {
			return nil, fmt.Errorf("chart: %s: no bars", s.Symbol)
		}
		if s.AsOf().After(asOf) {
			asOf = s.AsOf()
		}
		synthetic = synthetic || s.Synthetic
	}
	from := time.Time{}
	if opts.Window > 0 {
		from = asOf.Add(-opts.Window)
	}

	if len(series) == 1 {
		return panelChart(series[0], from, opts, w, h)
	}
	p := plot.New()
	styleAxes(p, 1)
	p.X.Tick.Marker = monthTicks{}
	p.Title.TextStyle.Font.Size = vg.Points(15)
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(13)

	desc := opts.Title
	{
		if desc == "" {
			syms := make([]string, len(series))
			for i, s := range series {
				syms[i] = s.Symbol
			}
			desc = strings.Join(syms, ", ") + ": performance, first bar = 100"
			if len(syms) > 4 { // the legend names them; a long list would run off the picture
				desc = fmt.Sprintf("%d symbols: performance, first bar = 100", len(syms))
			}
		}
		p.Y.Tick.Marker = stepTicks{n: 8}
		p.Y.Label.Text = "performance (first bar in window = 100)"
		for i, s := range series {
			c := s.Closes()
			xys := windowXYs(s.Bars, c, from)
			if len(xys) == 0 {
				return nil, fmt.Errorf("chart: %s: no bars in the window", s.Symbol)
			}
			base := xys[0].Y
			for j := range xys {
				xys[j].Y = xys[j].Y / base * 100
			}
			name := fmt.Sprintf("%s %+.1f%%", s.Symbol, xys[len(xys)-1].Y-100)
			if s.Synthetic {
				name += " (synthetic)"
			}
			col, dashes := lineStyle(i)
			if err := addLine(p, xys, name, 2.2, col, dashes...); err != nil {
				return nil, err
			}
		}
	}

	p.Title.Text = chartTitle(desc, series)
	if synthetic {
		p.Title.TextStyle.Color = color.RGBA{R: 200, A: 255}
	}

	img := image.NewRGBA(image.Rect(0, 0, w, h))
	canvas := vgimg.NewWith(vgimg.UseImage(img))
	p.Draw(draw.New(canvas))
	var buf bytes.Buffer
	// Fast compression: the default level triples the time of a chart for a few percent of its size.
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, canvas.Image()); err != nil {
		return nil, fmt.Errorf("chart: encoding png: %w", err)
	}
	return buf.Bytes(), nil
}

// chartTitle says what is drawn, as of when and from where, and puts the synthetic warning at both ends so
// that cropping cannot remove it.
func chartTitle(desc string, series []Series) string {
	var sources, dates []string
	synthetic, same := false, true
	for _, s := range series {
		if !slices.Contains(sources, s.Source) {
			sources = append(sources, s.Source)
		}
		synthetic = synthetic || s.Synthetic
		same = same && s.AsOf().Equal(series[0].AsOf())
		dates = append(dates, s.Symbol+" "+s.AsOf().Format(time.DateOnly))
	}
	// Each symbol is dated by its own last bar: a crypto pair's or an old file's as-of is not another's.
	asOf := strings.Join(dates, ", ")
	if same {
		asOf = series[0].AsOf().Format(time.DateOnly)
	}
	title := fmt.Sprintf("%s\nas of %s, source: %s", desc, asOf, strings.Join(sources, ", "))
	if synthetic {
		title = "SYNTHETIC DATA - " + title + " - NOT REAL PRICES"
	}
	return title
}

// windowXYs pairs bar dates (as Unix seconds, which TimeTicks expects) with ys for the bars dated after
// from (all bars when from is zero, the same rule as Compute's window), skipping values not yet defined.
func windowXYs(bars []Bar, ys []float64, from time.Time) plotter.XYs {
	var xys plotter.XYs
	for i, b := range bars {
		if (!from.IsZero() && !b.Date.After(from)) || math.IsNaN(ys[i]) || math.IsInf(ys[i], 0) {
			continue
		}
		xys = append(xys, plotter.XY{X: float64(b.Date.Unix()), Y: ys[i]})
	}
	return xys
}

func addLine(p *plot.Plot, xys plotter.XYs, name string, width vg.Length, col color.Color, dashes ...vg.Length) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("chart: %s: %w", name, err)
	}
	l.LineStyle.Width = vg.Points(float64(width))
	l.LineStyle.Color = col
	l.LineStyle.Dashes = dashes
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// monthTicks labels the first day of every month, or of every second, third, sixth or twelfth month on
// longer spans, because dates on a price chart are read by month ("since October"), and gonum's default
// ticks fall on arbitrary days.
type monthTicks struct {
	unlabelled bool // ticks only, for a panel above another that names the dates
}

// Ticks implements plot.Ticker over Unix seconds.
func (m monthTicks) Ticks(lo, hi float64) []plot.Tick {
	from, to := time.Unix(int64(lo), 0).UTC(), time.Unix(int64(hi), 0).UTC()
	months := (to.Year()-from.Year())*12 + int(to.Month()-from.Month())
	step := 1
	for _, s := range []int{1, 2, 3, 6, 12, 24, 60} {
		step = s
		if months/s <= 10 {
			break
		}
	}
	var ticks []plot.Tick
	for mo := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC); !mo.After(to); mo = mo.AddDate(0, 1, 0) {
		if mo.Before(from) {
			continue
		}
		t := plot.Tick{Value: float64(mo.Unix())}
		if (mo.Year()*12+int(mo.Month())-1)%step == 0 && !m.unlabelled {
			t.Label = mo.Format("Jan 2006")
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// stepTicks labels every tick at a round step (1, 2 or 5 times a power of ten) chosen so that about n
// ticks span the axis; gonum's default labels only three or so and leaves the rest unlabelled.
type stepTicks struct{ n int }

// Ticks implements plot.Ticker.
func (s stepTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || s.n < 2 {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	raw := (hi - lo) / float64(s.n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	decimals := max(0, int(-math.Floor(math.Log10(step))))
	var ticks []plot.Tick
	for i := math.Ceil(lo / step); i*step <= hi; i++ {
		v := i * step
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', decimals, 64)})
	}
	return ticks
}
