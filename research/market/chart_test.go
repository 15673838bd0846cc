package market

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"testing"
	"time"
)

// inspectPNG decodes a chart and measures how much of it is drawn and whether the synthetic title's pure
// red is present.
func inspectPNG(t *testing.T, b []byte) (img image.Image, inked float64, colours int, red bool) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	seen := map[[3]uint32]bool{}
	var ink, total int
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
			total++
			if r < 0xf000 || g < 0xf000 || b < 0xf000 {
				ink++
			}
			if r>>8 >= 150 && g == 0 && b == 0 {
				red = true
			}
		}
	}
	return img, float64(ink) / float64(total), len(seen), red
}

// writeChartArtifact keeps the picture for a person to look at when CHART_DIR is set.
func writeChartArtifact(t *testing.T, name string, b []byte) {
	if dir := os.Getenv("CHART_DIR"); dir != "" {
		if err := os.WriteFile(dir+"/"+name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestChartOneSeries(t *testing.T) {
	t.Parallel()
	b, err := Chart([]Series{loadAAPL(t)}, ChartOptions{Window: 365 * dayDur})
	if err != nil {
		t.Fatal(err)
	}
	writeChartArtifact(t, "aapl.png", b)
	img, inked, colours, red := inspectPNG(t, b)
	// One series: four panels in portrait, for a phone.
	if img.Bounds().Dx() != 1080 || img.Bounds().Dy() != 1350 {
		t.Errorf("size %v", img.Bounds())
	}
	if inked < 0.01 || inked > 0.5 || colours < 10 {
		t.Errorf("%.1f%% drawn, %d colours: blank or smeared", inked*100, colours)
	}
	if red {
		t.Error("real data drawn with the synthetic warning colour")
	}
}

func TestChartSeveralSeries(t *testing.T) {
	t.Parallel()
	series, errs := FetchAll(context.Background(), NewDemo(fixedClock(time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC))),
		[]string{"AAPL", "MSFT", "NVDA"}, 400*dayDur)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	in := []Series{series["AAPL"], series["MSFT"], series["NVDA"]}
	b, err := Chart(in, ChartOptions{Window: 182 * dayDur, Width: 1000, Height: 560})
	if err != nil {
		t.Fatal(err)
	}
	writeChartArtifact(t, "demo3.png", b)
	img, inked, colours, red := inspectPNG(t, b)
	if img.Bounds().Dx() != 1000 || img.Bounds().Dy() != 560 {
		t.Errorf("size %v", img.Bounds())
	}
	if inked < 0.01 || inked > 0.5 || colours < 10 {
		t.Errorf("%.1f%% drawn, %d colours: blank or smeared", inked*100, colours)
	}
	if !red {
		t.Error("synthetic data drawn without the red SYNTHETIC DATA title")
	}
}

func TestChartTitle(t *testing.T) {
	t.Parallel()
	real := Series{Symbol: "AAPL", Source: "csv", Bars: []Bar{{Date: time.Date(2017, 2, 16, 0, 0, 0, 0, time.UTC), Close: 1}}}
	fake := Series{Symbol: "MSFT", Source: "demo", Synthetic: true, Bars: real.Bars}
	if got, want := chartTitle("desc", []Series{real}), "desc\nas of 2017-02-16, source: csv"; got != want {
		t.Errorf("title %q, want %q", got, want)
	}
	if got, want := chartTitle("desc", []Series{real, fake}), "SYNTHETIC DATA - desc\nas of 2017-02-16, source: csv, demo - NOT REAL PRICES"; got != want {
		t.Errorf("title %q, want %q", got, want)
	}
}

func TestChartErrors(t *testing.T) {
	t.Parallel()
	aapl := loadAAPL(t)
	for name, tc := range map[string]struct {
		series []Series
		opts   ChartOptions
	}{
		"no series":      {nil, ChartOptions{}},
		"empty series":   {[]Series{{Symbol: "X"}}, ChartOptions{}},
		"one of three":   {[]Series{aapl, {Symbol: "X"}, aapl}, ChartOptions{}},
		"absurd size":    {[]Series{aapl}, ChartOptions{Width: 10, Height: 10}},
		"negative width": {[]Series{aapl}, ChartOptions{Width: -5}},
	} {
		if _, err := Chart(tc.series, tc.opts); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A series too short for either average still draws its close.
	short := aapl
	short.Bars = aapl.Bars[:30]
	if _, err := Chart([]Series{short}, ChartOptions{}); err != nil {
		t.Errorf("short series: %v", err)
	}
}

// The panels carry what they claim: each panel's band of the picture is drawn on, the volume panel has both
// up (green) and down (red) bars, and a Yahoo series with a dividend and a split draws their marks.
func TestChartPanels(t *testing.T) {
	t.Parallel()
	s, err := parseYahooChart("AAPL", []byte(recorded(t, "chart-AAPL-2020-08-31-to-2020-11-07.json")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Chart([]Series{s}, ChartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeChartArtifact(t, "aapl-yahoo.png", b)
	img, inked, colours, _ := inspectPNG(t, b)
	if img.Bounds().Dx() != 1080 || img.Bounds().Dy() != 1350 || inked < 0.02 || colours < 20 || len(b) < 20_000 {
		t.Fatalf("size %v, %.1f%% drawn, %d colours, %d bytes", img.Bounds(), inked*100, colours, len(b))
	}
	// Ink in each panel's band (price 0-52 %, volume 52-66 %, RSI 66-81 %, MACD 81-100 % of the height).
	bands := [][2]float64{{0.08, 0.5}, {0.54, 0.64}, {0.68, 0.79}, {0.83, 0.95}}
	h := float64(img.Bounds().Dy())
	for i, band := range bands {
		green, red, ink := 0, 0, 0
		for y := int(band[0] * h); y < int(band[1]*h); y++ {
			for x := 120; x < img.Bounds().Dx()-20; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				r, g, bl = r>>8, g>>8, bl>>8
				if r < 240 || g < 240 || bl < 240 {
					ink++
				}
				if r == 44 && g == 160 && bl == 44 {
					green++
				}
				if r == 214 && g == 39 && bl == 40 {
					red++
				}
			}
		}
		if ink < 500 {
			t.Errorf("panel %d is nearly empty (%d inked pixels)", i, ink)
		}
		if i == 1 && (green < 100 || red < 100) {
			t.Errorf("volume panel: %d green, %d red pixels", green, red)
		}
	}
	// The dividend and split marks are in the event colour.
	events := 0
	for y := 0; y < int(0.52*h); y++ {
		for x := 0; x < img.Bounds().Dx(); x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == 23 && g>>8 == 140 && bl>>8 == 160 {
				events++
			}
		}
	}
	if events < 20 {
		t.Errorf("no event marks (%d pixels)", events)
	}
}
