package market

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// CacheOptions shape a Cache. Zero values take the defaults.
type CacheOptions struct {
	// TTL keeps a fetched series for this long (default 1 min): daily bars
	// do not change within it, and a quote and its run share one fetch.
	TTL time.Duration
	// FailTTL keeps a failure for this long (default 30 s): a provider that
	// is down or rate limiting is asked again after it, not on every quote.
	FailTTL time.Duration
	// MaxEntries bounds the cache (default 1024); the entries that expire
	// first are dropped first.
	MaxEntries int
	// FetchTimeout bounds one shared upstream fetch (default 30 s): it runs
	// on its own, so one caller giving up does not fail the others.
	FetchTimeout time.Duration
	Now          func() time.Time
}

// Cache wraps a Provider: concurrent requests for one symbol and lookback
// share one upstream fetch (coalescing), a result is kept for TTL and a
// failure for FailTTL (negative caching). One user sending many quotes, or
// a scan and a quote on the same symbol, so costs the provider one request
// per symbol per TTL, and a failing provider one per FailTTL.
type Cache struct {
	p    Provider
	opts CacheOptions

	mu      sync.Mutex
	entries map[cacheKey]*cacheEntry

	upstream atomic.Int64
}

var _ Provider = (*Cache)(nil)

type cacheKey struct {
	symbol   string
	lookback time.Duration
}

type cacheEntry struct {
	done    chan struct{} // closed when the fetch ends
	series  Series
	err     error
	expires time.Time // set when done
}

// NewCache wraps p.
func NewCache(p Provider, opts CacheOptions) *Cache {
	if opts.TTL <= 0 {
		opts.TTL = time.Minute
	}
	if opts.FailTTL <= 0 {
		opts.FailTTL = 30 * time.Second
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 1024
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{p: p, opts: opts, entries: map[cacheKey]*cacheEntry{}}
}

// Name is the wrapped provider's.
func (c *Cache) Name() string { return c.p.Name() }

// Synthetic is the wrapped provider's.
func (c *Cache) Synthetic() bool { return c.p.Synthetic() }

// Upstream counts the fetches that reached the wrapped provider.
func (c *Cache) Upstream() int64 { return c.upstream.Load() }

// History serves from the cache, joins a fetch in flight, or fetches.
// Errors are the provider's (a cached failure is returned as it was), or
// the caller's context error.
func (c *Cache) History(ctx context.Context, symbol string, lookback time.Duration) (Series, error) {
	sym, err := NormalizeSymbol(symbol)
	if err != nil {
		return c.p.History(ctx, symbol, lookback) // the provider's own refusal, no request made
	}
	k := cacheKey{sym, lookback}
	c.mu.Lock()
	e := c.entries[k]
	if e != nil {
		select {
		case <-e.done:
			if !c.opts.Now().Before(e.expires) {
				e = nil // expired
			}
		default: // in flight: join it
		}
	}
	if e == nil {
		e = &cacheEntry{done: make(chan struct{})}
		c.prune()
		c.entries[k] = e
		c.mu.Unlock()
		go c.fetch(ctx, k, e)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return Series{}, context.Cause(ctx)
	}
	if e.err != nil {
		return Series{}, e.err
	}
	s := e.series
	s.Bars = slices.Clone(s.Bars) // callers own what they get
	return s, nil
}

// fetch runs one upstream request for k on its own context (the first
// caller's values, not its cancel), so every waiter gets its answer.
func (c *Cache) fetch(ctx context.Context, k cacheKey, e *cacheEntry) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.FetchTimeout)
	defer cancel()
	c.upstream.Add(1)
	s, err := c.p.History(fctx, k.symbol, k.lookback)
	ttl := c.opts.TTL
	if err != nil {
		ttl = c.opts.FailTTL
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			ttl = 0 // says nothing about the provider's next answer
		}
	}
	c.mu.Lock()
	e.series, e.err, e.expires = s, err, c.opts.Now().Add(ttl)
	close(e.done)
	if ttl == 0 && c.entries[k] == e {
		delete(c.entries, k)
	}
	c.mu.Unlock()
}

// prune drops expired entries and, when still full, those expiring first.
// Called with mu held.
func (c *Cache) prune() {
	if len(c.entries) < c.opts.MaxEntries {
		return
	}
	now := c.opts.Now()
	type done struct {
		k       cacheKey
		expires time.Time
	}
	var finished []done
	for k, e := range c.entries {
		select {
		case <-e.done:
			if !now.Before(e.expires) {
				delete(c.entries, k)
				continue
			}
			finished = append(finished, done{k, e.expires})
		default:
		}
	}
	if excess := len(c.entries) - c.opts.MaxEntries + 1; excess > 0 {
		slices.SortFunc(finished, func(a, b done) int { return a.expires.Compare(b.expires) })
		for _, f := range finished[:min(excess, len(finished))] {
			delete(c.entries, f.k)
		}
	}
}
