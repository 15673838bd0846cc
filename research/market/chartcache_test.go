package market

import (
	"bytes"
	"context"
	"slices"
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
