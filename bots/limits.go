package bots

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// Limits per user against abuse, each answered with a clear message. Zero
// values take the defaults.
type UserLimits struct {
	// QuotesPerMinute bounds the quotes (research, scan, depth changes,
	// schedule proposals) one user may ask for (default 10, burst as many).
	// Each quote fetches market data, so this also bounds what one user
	// can make the data provider see.
	QuotesPerMinute int
	// MaxRunning bounds a user's runs queued, running or paused at once
	// (default 3).
	MaxRunning int
}

const (
	defaultQuotesPerMinute = 10
	defaultMaxRunning      = 3
	// maxLimiters bounds the per-user limiter map; past it, the limiters of
	// users who are back to a full allowance are dropped (they lose nothing).
	maxLimiters = 4096
)

// quoteLimiter hands out one token bucket per identity.
type quoteLimiter struct {
	mu   sync.Mutex
	per  map[billing.Identity]*rate.Limiter
	rate int
}

// allowQuote takes one quote from who's allowance, or says when the next
// one is possible.
func (c *Conversation) allowQuote(who billing.Identity) error {
	n := c.Limits.QuotesPerMinute
	if n <= 0 {
		n = defaultQuotesPerMinute
	}
	l := &c.quotes
	l.mu.Lock()
	if l.per == nil || l.rate != n {
		l.per, l.rate = map[billing.Identity]*rate.Limiter{}, n
	}
	lim := l.per[who]
	if lim == nil {
		if len(l.per) >= maxLimiters {
			for id, other := range l.per {
				if other.Tokens() >= float64(other.Burst()) {
					delete(l.per, id)
				}
			}
		}
		lim = rate.NewLimiter(rate.Limit(float64(n)/60), n)
		l.per[who] = lim
	}
	l.mu.Unlock()
	r := lim.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return sayf("Too many quotes: at most %d a minute. Try again in %s; nothing was fetched or held.", n, d.Round(time.Second)+time.Second)
	}
	return nil
}

// runLimit bounds the confirm in ctx to MaxRunning live runs: the store
// counts them in the confirm's transaction (research.WithRunLimit), so
// confirms pressed at the same instant cannot pass it together.
func (c *Conversation) runLimit(ctx context.Context) context.Context {
	n := c.Limits.MaxRunning
	if n <= 0 {
		n = defaultMaxRunning
	}
	return research.WithRunLimit(ctx, n)
}
