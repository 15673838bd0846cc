package market_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/research/market"
)

// countingProvider counts upstream requests; it answers when gate closes.
type countingProvider struct {
	market.Provider
	calls  atomic.Int64
	gate   chan struct{}
	err    error
	called chan struct{} // closed at the first request
	once   sync.Once
}

func (p *countingProvider) History(ctx context.Context, sym string, lb time.Duration) (market.Series, error) {
	p.calls.Add(1)
	p.once.Do(func() {
		if p.called != nil {
			close(p.called)
		}
	})
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return market.Series{}, ctx.Err()
		}
	}
	if p.err != nil {
		return market.Series{}, p.err
	}
	return p.Provider.History(ctx, sym, lb)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestCacheCoalescesConcurrentFetches: 20 concurrent requests for one
// symbol make one upstream request, and every caller gets the series.
func TestCacheCoalescesConcurrentFetches(t *testing.T) {
	t.Parallel()
	up := &countingProvider{Provider: market.NewDemo(time.Now), gate: make(chan struct{}), called: make(chan struct{})}
	c := market.NewCache(up, market.CacheOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			s, err := c.History(t.Context(), "aapl", 365*24*time.Hour)
			if err == nil && len(s.Bars) == 0 {
				err = errors.New("no bars")
			}
			errs <- err
		})
	}
	// The fetch is held until the callers have piled up on it; any caller
	// arriving later finds it cached.
	<-up.called
	close(up.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := up.calls.Load(); n != 1 {
		t.Fatalf("%d upstream requests for 20 concurrent callers, want 1", n)
	}
	// Within TTL the next caller is served from the cache.
	if _, err := c.History(t.Context(), "AAPL", 365*24*time.Hour); err != nil || up.calls.Load() != 1 {
		t.Fatalf("cached read: %v, %d upstream", err, up.calls.Load())
	}
}

// TestCacheRemembersFailuresBriefly: a failing provider is asked once per
// FailTTL however many callers come; after it, once more.
func TestCacheRemembersFailuresBriefly(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	up := &countingProvider{Provider: market.NewDemo(time.Now), err: market.ErrRateLimited}
	c := market.NewCache(up, market.CacheOptions{FailTTL: 30 * time.Second, Now: clock.Now})
	for range 10 {
		if _, err := c.History(t.Context(), "NVDA", time.Hour); !errors.Is(err, market.ErrRateLimited) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := up.calls.Load(); n != 1 {
		t.Fatalf("%d upstream requests for 10 failing reads within FailTTL, want 1", n)
	}
	clock.Add(31 * time.Second)
	if _, err := c.History(t.Context(), "NVDA", time.Hour); !errors.Is(err, market.ErrRateLimited) || up.calls.Load() != 2 {
		t.Fatalf("after FailTTL: %v, %d upstream", err, up.calls.Load())
	}
}

// TestCacheCallerCancelDoesNotFailOthers: the first caller giving up does
// not cancel the shared fetch.
func TestCacheCallerCancelDoesNotFailOthers(t *testing.T) {
	t.Parallel()
	up := &countingProvider{Provider: market.NewDemo(time.Now), gate: make(chan struct{}), called: make(chan struct{})}
	c := market.NewCache(up, market.CacheOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { _, err := c.History(ctx, "MSFT", time.Hour); first <- err }()
	<-up.called
	second := make(chan error, 1)
	go func() { _, err := c.History(t.Context(), "MSFT", time.Hour); second <- err }()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	close(up.gate)
	if err := <-second; err != nil {
		t.Fatalf("second caller: %v", err)
	}
	if up.calls.Load() != 1 {
		t.Fatalf("%d upstream requests", up.calls.Load())
	}
}

// TestCacheIsBounded: past MaxEntries, entries are dropped.
func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	up := &countingProvider{Provider: market.NewDemo(time.Now)}
	c := market.NewCache(up, market.CacheOptions{MaxEntries: 4})
	for i := range 10 {
		if _, err := c.History(t.Context(), "AAPL", time.Duration(i+1)*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	before := up.calls.Load()
	// The first lookbacks were dropped: asking again goes upstream.
	if _, err := c.History(t.Context(), "AAPL", time.Hour); err != nil || up.calls.Load() != before+1 {
		t.Fatalf("a dropped entry was still served: %v, %d -> %d", err, before, up.calls.Load())
	}
}
