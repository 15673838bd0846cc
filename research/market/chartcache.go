package market

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"sync"
)

// ChartCache keeps the PNGs Chart drew, keyed by everything the picture is drawn from (each series' bars,
// actions, live bar and labels, and the options), so runs of the same symbols on the same data draw their
// chart once. Drawing is most of a quick run's CPU; scans of one watchlist on one day all share a chart.
// The zero value is ready to use and safe for concurrent use; it holds at most chartCacheSize charts.
type ChartCache struct {
	mu     sync.Mutex
	charts map[uint64][]byte
}

const chartCacheSize = 32

// Chart is Chart(series, opts), from the cache when the same picture was drawn before. The bytes returned
// are shared: callers must not change them.
func (c *ChartCache) Chart(series []Series, opts ChartOptions) ([]byte, error) {
	key := chartKey(series, opts)
	c.mu.Lock()
	png, ok := c.charts[key]
	c.mu.Unlock()
	if ok {
		return png, nil
	}
	png, err := Chart(series, opts)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.charts == nil {
		c.charts = map[uint64][]byte{}
	}
	if len(c.charts) >= chartCacheSize {
		for k := range c.charts { // any one: the cache is small and a miss only costs a redraw
			delete(c.charts, k)
			break
		}
	}
	c.charts[key] = png
	return png, nil
}

// chartKey hashes every input of a chart. A 64-bit FNV-1a over the full data makes a collision between two
// different pictures practically impossible at this cache's size.
func chartKey(series []Series, opts ChartOptions) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	num := func(f float64) {
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(f))
		h.Write(buf[:])
	}
	bar := func(b Bar) {
		num(float64(b.Date.UnixNano()))
		for _, f := range []float64{b.Open, b.High, b.Low, b.Close, b.Volume} {
			num(f)
		}
		if b.NoVolume {
			h.Write([]byte{1})
		}
	}
	fmt.Fprintf(h, "%d|%d|%d|%q|", opts.Window, opts.Width, opts.Height, opts.Title)
	for _, s := range series {
		fmt.Fprintf(h, "%q|%q|%t|%q|%q|%q|%q|%d|%d|%d|", s.Symbol, s.Source, s.Synthetic, s.Currency, s.Class,
			s.Exchange, s.TimeZone, s.PriceHint, s.LastTime.UnixNano(), len(s.Bars))
		for _, b := range s.Bars {
			bar(b)
		}
		if s.Live != nil {
			h.Write([]byte("live"))
			bar(*s.Live)
		}
		for _, a := range s.Actions {
			fmt.Fprintf(h, "%d|%q|", a.Date.UnixNano(), a.Kind)
			num(a.Amount)
			num(a.Numerator)
			num(a.Denominator)
		}
	}
	return h.Sum64()
}
