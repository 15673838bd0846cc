package market

import (
	"encoding/binary"
	"errors"
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
	// drawing holds the charts being drawn: a caller wanting one waits for
	// it instead of drawing it again (at the market open a hundred scans of
	// one watchlist end at once, and each drew the same chart).
	drawing map[uint64]*drawn
}

type drawn struct {
	done chan struct{}
	png  []byte
	err  error
}

const chartCacheSize = 32

// Chart is Chart(series, opts), from the cache when the same picture was drawn before. The bytes returned
// are shared: callers must not change them.
func (c *ChartCache) Chart(series []Series, opts ChartOptions) ([]byte, error) {
	key := chartKey(series, opts)
	c.mu.Lock()
	if png, ok := c.charts[key]; ok {
		c.mu.Unlock()
		return png, nil
	}
	if d, ok := c.drawing[key]; ok {
		c.mu.Unlock()
		<-d.done
		return d.png, d.err
	}
	if c.drawing == nil {
		c.drawing = map[uint64]*drawn{}
	}
	d := &drawn{done: make(chan struct{})}
	c.drawing[key] = d
	c.mu.Unlock()

	d.err = errors.New("chart: the drawing panicked") // unless Chart returns
	func() {
		// Waiters are let go even if Chart panics (River recovers a job's panic).
		defer func() {
			c.mu.Lock()
			delete(c.drawing, key)
			close(d.done)
			c.mu.Unlock()
		}()
		d.png, d.err = Chart(series, opts)
	}()
	if d.err != nil {
		return nil, d.err
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
	c.charts[key] = d.png
	return d.png, nil
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
