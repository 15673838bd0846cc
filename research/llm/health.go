package llm

import (
	"slices"
	"sync"
	"time"
)

// Health tracks how each route has been doing, so a route that keeps failing
// is skipped for a while instead of costing every run its retries and
// backoffs. It is safe for concurrent use and shared by every Client of a
// process.
//
// The window is the last N attempts per route, not a time span: traffic per
// route is bursty, and a count window gives a success rate and percentiles
// with a known number of samples whether a route served ten calls a minute or
// one an hour.
//
// A route cools down (Available reports false until CoolingUntil) when
// FailuresToCool attempts in a row fail, or when at least MinSamples samples
// are in the window and its success rate falls below MinSuccessRate. After a
// cooldown the route is on probation: its next attempt, if it fails, cools it
// again at once; a success ends the probation.
type Health struct {
	opts HealthOptions

	mu     sync.Mutex
	routes map[string]*routeHealth
}

// HealthOptions configures a Health. Zero values take the defaults.
type HealthOptions struct {
	Window         int           // attempts kept per route; default 50
	Cooldown       time.Duration // how long a failing route is skipped; default 1m
	FailuresToCool int           // consecutive failures that cool a route; default 3
	MinSuccessRate float64       // success rate below which a route cools; default 0.5, negative disables
	MinSamples     int           // samples needed before MinSuccessRate applies; default 10
	Now            func() time.Time
}

// NewHealth returns a Health with opts' zero values set to their defaults.
func NewHealth(opts HealthOptions) *Health {
	if opts.Window <= 0 {
		opts.Window = 50
	}
	if opts.Cooldown <= 0 {
		opts.Cooldown = time.Minute
	}
	if opts.FailuresToCool <= 0 {
		opts.FailuresToCool = 3
	}
	if opts.MinSuccessRate == 0 {
		opts.MinSuccessRate = 0.5
	}
	if opts.MinSamples <= 0 {
		opts.MinSamples = 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Health{opts: opts, routes: map[string]*routeHealth{}}
}

// RouteStats is a route's health over the window.
type RouteStats struct {
	Samples             int
	Successes           int
	SuccessRate         float64       // Successes/Samples; 0 with no samples
	ConsecutiveFailures int           // failures since the last success
	P50FirstToken       time.Duration // median time to first token of successful attempts that streamed text
	TokensPerSecond     float64       // output tokens over generation time (after the first token) of successful attempts
	CoolingUntil        time.Time     // zero unless the route is cooling down now
}

type sample struct {
	ok         bool
	firstToken time.Duration
	outTokens  int64
	d          time.Duration
}

type routeHealth struct {
	ring         []sample // circular, len <= Window
	next         int
	consecutive  int
	coolingUntil time.Time
	probation    bool
}

// Record adds one attempt's outcome: ok, its time to first token (0 if no
// text came), the output tokens it produced and how long it took. Attempts
// the caller cancelled should not be recorded: they say nothing of the route.
func (h *Health) Record(route string, ok bool, firstToken time.Duration, outTokens int64, d time.Duration) {
	now := h.opts.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.routes[route]
	if r == nil {
		r = &routeHealth{}
		h.routes[route] = r
	}
	s := sample{ok: ok, firstToken: firstToken, outTokens: outTokens, d: d}
	if len(r.ring) < h.opts.Window {
		r.ring = append(r.ring, s)
	} else {
		r.ring[r.next] = s
	}
	r.next = (r.next + 1) % h.opts.Window

	if ok {
		r.consecutive = 0
		r.probation = false
		return
	}
	r.consecutive++
	cool := r.consecutive >= h.opts.FailuresToCool || r.probation
	if h.opts.MinSuccessRate > 0 && len(r.ring) >= h.opts.MinSamples {
		succ := 0
		for _, s := range r.ring {
			if s.ok {
				succ++
			}
		}
		if float64(succ)/float64(len(r.ring)) < h.opts.MinSuccessRate {
			cool = true
		}
	}
	if cool {
		r.coolingUntil = now.Add(h.opts.Cooldown)
		r.probation = true
	}
}

// Available reports whether the route may be tried: false while it cools down.
// A route never seen is available.
func (h *Health) Available(route string) bool {
	now := h.opts.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.routes[route]
	return r == nil || !now.Before(r.coolingUntil)
}

// Stats returns the route's statistics over the window.
func (h *Health) Stats(route string) RouteStats {
	now := h.opts.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.routes[route]
	if r == nil {
		return RouteStats{}
	}
	return r.stats(now)
}

// All returns the statistics of every route seen, for a status page.
func (h *Health) All() map[string]RouteStats {
	now := h.opts.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]RouteStats, len(h.routes))
	for id, r := range h.routes {
		out[id] = r.stats(now)
	}
	return out
}

func (r *routeHealth) stats(now time.Time) RouteStats {
	st := RouteStats{Samples: len(r.ring), ConsecutiveFailures: r.consecutive}
	if now.Before(r.coolingUntil) {
		st.CoolingUntil = r.coolingUntil
	}
	var (
		firsts   []time.Duration
		tokens   int64
		generate time.Duration
	)
	for _, s := range r.ring {
		if !s.ok {
			continue
		}
		st.Successes++
		if s.firstToken > 0 {
			firsts = append(firsts, s.firstToken)
		}
		if s.outTokens > 0 && s.d > s.firstToken {
			tokens += s.outTokens
			generate += s.d - s.firstToken
		}
	}
	if st.Samples > 0 {
		st.SuccessRate = float64(st.Successes) / float64(st.Samples)
	}
	if len(firsts) > 0 {
		slices.Sort(firsts)
		// The lower median: a real observed value, never an average of two.
		st.P50FirstToken = firsts[(len(firsts)-1)/2]
	}
	if generate > 0 {
		st.TokensPerSecond = float64(tokens) / generate.Seconds()
	}
	return st
}
