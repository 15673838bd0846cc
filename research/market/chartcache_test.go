package market

import (
	"bytes"
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestChartCache: the same data and options give the cached picture (the very same bytes, not drawn
// again), equal to what Chart draws; any change in the data draws a new one; the cache stays bounded.
func TestChartCache(t *testing.T) {
	t.Parallel()
	series, errs := FetchAll(context.Background(), NewDemo(fixedClock(time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC))),
		[]string{"AAPL"}, 400*dayDur)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	in := []Series{series["AAPL"]}
	opts := ChartOptions{Window: 90 * dayDur, Width: 400, Height: 300}
	var c ChartCache
	first, err := c.Chart(in, opts)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := c.Chart(in, opts)
	if &first[0] != &again[0] {
		t.Fatal("the same data was drawn again instead of served from the cache")
	}
	direct, _ := Chart(in, opts)
	if !bytes.Equal(first, direct) {
		t.Fatal("the cached chart differs from the one Chart draws")
	}
	changed := series["AAPL"]
	changed.Bars = slices.Clone(changed.Bars)
	changed.Bars[len(changed.Bars)-1].Close *= 1.5
	other, _ := c.Chart([]Series{changed}, opts)
	if bytes.Equal(other, first) {
		t.Fatal("a changed close was served the old chart")
	}
	for w := range chartCacheSize + 5 {
		if _, err := c.Chart(in, ChartOptions{Window: 90 * dayDur, Width: 300 + w, Height: 200}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.charts); n > chartCacheSize {
		t.Fatalf("the cache holds %d charts, more than %d", n, chartCacheSize)
	}
}

// TestStepTicks: the performance chart's y axis labels every tick at a round step, about n of them, so a
// 10-symbol chart has more than gonum's three labelled ticks.
func TestStepTicks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		lo, hi float64
		want   []string
	}{
		{85, 160, []string{"90", "100", "110", "120", "130", "140", "150", "160"}},
		{0.97, 1.04, []string{"0.97", "0.98", "0.99", "1.00", "1.01", "1.02", "1.03", "1.04"}},
	} {
		var got []string
		for _, tk := range (stepTicks{n: 8}).Ticks(c.lo, c.hi) {
			got = append(got, tk.Label)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("ticks over [%g, %g] = %v, want %v", c.lo, c.hi, got, c.want)
		}
	}
}

// TestChartCacheDrawsOnceForConcurrentCallers: callers asking at once for a
// chart not yet drawn wait for the one drawing and get its very bytes, not
// one picture each (a hundred scans of one watchlist end at the same time).
func TestChartCacheDrawsOnceForConcurrentCallers(t *testing.T) {
	t.Parallel()
	series, errs := FetchAll(context.Background(), NewDemo(fixedClock(time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC))),
		[]string{"MSFT"}, 400*dayDur)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	in := []Series{series["MSFT"]}
	opts := ChartOptions{Window: 90 * dayDur, Width: 400, Height: 300}
	var c ChartCache
	start := make(chan struct{})
	got := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			<-start
			png, err := c.Chart(in, opts)
			if err != nil {
				t.Error(err)
			}
			got[i] = png
		})
	}
	close(start)
	wg.Wait()
	for i, png := range got {
		if len(png) == 0 || &png[0] != &got[0][0] {
			t.Fatalf("caller %d got a chart of its own: drawn more than once", i)
		}
	}
	if len(c.drawing) != 0 {
		t.Fatalf("%d drawings left in flight", len(c.drawing))
	}
}

// TestTenLinesToldApart: on a 10-symbol performance chart any two lines differ in dash pattern or
// are far apart in colour (RGB distance 100 or more): issue 15's chart had colours that could not be
// told apart (brown next to grey is 67 apart, red next to brown 94).
func TestTenLinesToldApart(t *testing.T) {
	t.Parallel()
	for i := range 10 {
		for j := i + 1; j < 10; j++ {
			ci, di := lineStyle(i)
			cj, dj := lineStyle(j)
			if (di == nil) != (dj == nil) {
				continue
			}
			dr, dg, db := float64(ci.R)-float64(cj.R), float64(ci.G)-float64(cj.G), float64(ci.B)-float64(cj.B)
			if d := math.Sqrt(dr*dr + dg*dg + db*db); d < 100 {
				t.Errorf("lines %d and %d: same dashes, colours %v and %v only %.0f apart", i, j, ci, cj, d)
			}
		}
	}
}
