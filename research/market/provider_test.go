package market

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// gatedProvider blocks every History call until the test opens the gate, and records how many calls were
// in flight at once.
type gatedProvider struct {
	entered chan string
	gate    chan struct{}
	fail    map[string]error

	mu             sync.Mutex
	inFlight, peak int
	calls          map[string]int
}

func (g *gatedProvider) Name() string    { return "gated" }
func (g *gatedProvider) Synthetic() bool { return false }

func (g *gatedProvider) History(ctx context.Context, symbol string, lookback time.Duration) (Series, error) {
	g.mu.Lock()
	g.inFlight++
	g.peak = max(g.peak, g.inFlight)
	g.calls[symbol]++
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.inFlight--; g.mu.Unlock() }()
	g.entered <- symbol
	select {
	case <-g.gate:
	case <-ctx.Done():
		return Series{}, ctx.Err()
	}
	if err := g.fail[symbol]; err != nil {
		return Series{}, err
	}
	return Series{Symbol: symbol, Source: "gated", Bars: []Bar{{Close: 1}}}, nil
}

func TestFetchAllBoundsConcurrencyAndReportsPartialFailures(t *testing.T) {
	t.Parallel()
	g := &gatedProvider{
		entered: make(chan string, 100),
		gate:    make(chan struct{}),
		fail:    map[string]error{"BAD": fmt.Errorf("gated: BAD: %w", ErrUnknownSymbol)},
		calls:   map[string]int{},
	}
	symbols := []string{"aapl", "AAPL", "MSFT", "BAD", "NVDA", "../etc", "AMZN", "META", "GOOGL", "TSLA", "brk.b"}
	type result struct {
		series map[string]Series
		errs   map[string]error
	}
	done := make(chan result)
	go func() {
		s, e := FetchAll(context.Background(), g, symbols, time.Hour)
		done <- result{s, e}
	}()

	// Wait until the bound is reached, then let everything through.
	timeout := time.After(5 * time.Second)
	for i := 0; i < fetchConcurrency; i++ {
		select {
		case <-g.entered:
		case <-timeout:
			t.Fatalf("only %d fetches started", i)
		}
	}
	close(g.gate)
	var r result
	select {
	case r = <-done:
	case <-timeout:
		t.Fatal("FetchAll did not finish")
	}

	if g.peak > fetchConcurrency {
		t.Errorf("%d fetches in flight, bound %d", g.peak, fetchConcurrency)
	}
	if g.calls["AAPL"] != 1 {
		t.Errorf("AAPL fetched %d times", g.calls["AAPL"])
	}
	for _, sym := range []string{"AAPL", "MSFT", "NVDA", "AMZN", "META", "GOOGL", "TSLA", "BRK-B"} {
		if r.series[sym].Symbol != sym {
			t.Errorf("missing %s", sym)
		}
	}
	if len(r.series) != 8 || len(r.errs) != 2 {
		t.Errorf("%d series, %d errors: %v", len(r.series), len(r.errs), r.errs)
	}
	if !errors.Is(r.errs["BAD"], ErrUnknownSymbol) || !errors.Is(r.errs["../etc"], ErrInvalidSymbol) {
		t.Errorf("errors %v", r.errs)
	}
}

func TestFetchAllCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("user cancelled")
	cancel(stop)
	series, errs := FetchAll(ctx, NewDemo(nil), []string{"AAPL", "MSFT"}, 30*dayDur)
	if len(series) != 0 || len(errs) != 2 {
		t.Fatalf("%d series, %d errors", len(series), len(errs))
	}
	for sym, err := range errs {
		if !errors.Is(err, stop) {
			t.Errorf("%s: %v does not carry the cause", sym, err)
		}
	}
}

func TestFetchAllDemo(t *testing.T) {
	t.Parallel()
	series, errs := FetchAll(context.Background(), NewDemo(fixedClock(time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC))), Presets["sector-etfs"], 400*dayDur)
	if len(errs) != 0 || len(series) != len(Presets["sector-etfs"]) {
		t.Fatalf("%d series, errors %v", len(series), errs)
	}
	for sym, s := range series {
		if !s.Synthetic || s.Symbol != sym {
			t.Errorf("%s: %+v", sym, s.Symbol)
		}
	}
}
