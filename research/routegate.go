package research

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tokensforge/forgebot/research/llm"
)

// Route limits. A route in the catalog may name its provider's limits
// (concurrent calls, requests and tokens per minute); every model call on it
// is then admitted within them, across all instances, by a line kept in the
// store (RouteQueue: a table on PostgreSQL, memory on SQLite, whose single
// process is the only caller). Calls wait in line in arrival order, and a
// run waiting shows its place ("queued: 37 ahead on this route, starts in
// about 40 s") and can be cancelled there, which frees its place at once.
//
// A 429 that comes anyway (the provider counts differently, or another
// client shares the key) lowers the route's admitted rate: the factor the
// limits are scaled by halves (to at least routeFloor), then grows back by
// routeStep every routeStepEvery (additive increase, multiplicative
// decrease), and every caller is held back for the 429's Retry-After.

// RouteLimits are a route's limits (llm.Limits).
type RouteLimits = llm.Limits

const (
	routeFloor     = 0.1 // the lowest factor a route's limits are scaled by
	routeDecrease  = 0.5 // a 429 multiplies the factor by this
	routeStep      = 0.1 // the factor grows back by this...
	routeStepEvery = 10 * time.Second
	// A rate limit is spread over the minute: at most a sixth of the
	// minute's requests (or tokens) start in any 10 s, as providers may
	// enforce per-minute limits over shorter periods.
	routeSpread = 6
	routeWindow = time.Minute
	routeSlice  = 10 * time.Second
)

// RouteMargin is how much longer than its window an admission counts: the
// provider counts a call when its request arrives, some time after the
// gate admitted it (a connection, a loaded machine), so a call admitted
// just as an earlier one left the gate's window could still land in the
// provider's. BenchmarkRouteLimit429 drew 3 upstream 429s in 60 calls
// against a provider counting 20 per 10 s without it, none with it.
const RouteMargin = time.Second

// RouteFactor is the factor a route's limits are scaled by at now, after a
// throttle left it at factor at the time at: it grows back linearly to 1.
func RouteFactor(factor float64, at, now time.Time) float64 {
	if factor <= 0 || factor >= 1 {
		return 1
	}
	return min(1, factor+routeStep*float64(now.Sub(at))/float64(routeStepEvery))
}

// ThrottledFactor is what a 429 leaves of a route's factor.
func ThrottledFactor(factor float64) float64 { return max(routeFloor, factor*routeDecrease) }

// RouteLine is a call's view of its route's line and capacity, read by the
// store under the route's lock.
type RouteLine struct {
	Admitted bool // the call may go (it now counts as in flight)
	// First: no live call waits before it. Ahead counts those that do, and
	// AheadTokens their tokens.
	First       bool
	Ahead       int
	AheadTokens int64
	InFlight    int // admitted calls not yet ended
	// Started and Tokens count admissions in the last minute, Started10 and
	// Tokens10 in the last 10 s.
	Started, Started10 int
	Tokens, Tokens10   int64
	Factor             float64   // the AIMD factor now (1: full limits)
	PausedUntil        time.Time // a 429's Retry-After holds every call back until then
	AvgCall            time.Duration
}

// Admits reports whether a call of tokens, first in line, may start now.
// A call larger than a token limit is let through alone, or it would never go.
func Admits(lim RouteLimits, l RouteLine, tokens int64, now time.Time) bool {
	if !l.First || now.Before(l.PausedUntil) {
		return false
	}
	f := l.Factor
	if f <= 0 {
		f = 1
	}
	if lim.Concurrent > 0 && l.InFlight >= scaled(int64(lim.Concurrent), f) {
		return false
	}
	if lim.RequestsPerMinute > 0 {
		per := scaled(int64(lim.RequestsPerMinute), f)
		if l.Started >= per || l.Started10 >= ceilDiv(per, routeSpread) {
			return false
		}
	}
	if lim.TokensPerMinute > 0 {
		per := int64(scaled(lim.TokensPerMinute, f))
		if (l.Started > 0 && l.Tokens+tokens > per) || (l.Started10 > 0 && l.Tokens10+tokens > ceilDiv64(per, routeSpread)) {
			return false
		}
	}
	return true
}

// RouteWait estimates how long a call of tokens waits before it starts.
func RouteWait(lim RouteLimits, l RouteLine, tokens int64, now time.Time) time.Duration {
	if l.Admitted {
		return 0
	}
	f := l.Factor
	if f <= 0 {
		f = 1
	}
	n := int64(l.Ahead + 1) // calls that start before this one, and this one
	var wait time.Duration
	if lim.RequestsPerMinute > 0 {
		per := int64(scaled(int64(lim.RequestsPerMinute), f))
		if over := n + int64(l.Started) - per; over > 0 {
			wait = max(wait, time.Duration(float64(routeWindow)*float64(over)/float64(per)))
		}
	}
	if lim.TokensPerMinute > 0 {
		per := int64(scaled(lim.TokensPerMinute, f))
		if over := l.AheadTokens + tokens + l.Tokens - per; over > 0 {
			wait = max(wait, time.Duration(float64(routeWindow)*float64(over)/float64(per)))
		}
	}
	if lim.Concurrent > 0 {
		c := int64(scaled(int64(lim.Concurrent), f))
		if over := n + int64(l.InFlight) - c; over > 0 {
			call := l.AvgCall
			if call <= 0 {
				call = 10 * time.Second
			}
			wait = max(wait, call*time.Duration(ceilDiv64(over, c)))
		}
	}
	if p := l.PausedUntil.Sub(now); p > wait {
		wait = p
	}
	return wait
}

func scaled(limit int64, f float64) int { return int(max(1, int64(math.Floor(float64(limit)*f)))) }

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func ceilDiv64(a, b int64) int64 { return (a + b - 1) / b }

// RouteQueue keeps each route's line of model calls and what they started,
// for every instance calling it. Every method is atomic per route.
type RouteQueue interface {
	// EnterRoute puts a call of tokens in route's line (a ticket live until
	// until) and admits it at once if it is first and lim has room.
	EnterRoute(ctx context.Context, route string, tokens int64, lim RouteLimits, now, until time.Time) (int64, RouteLine, error)
	// AdmitRoute admits a waiting ticket if it is now first and lim has
	// room, and keeps it live until until (admitted: its lease).
	AdmitRoute(ctx context.Context, route string, ticket int64, lim RouteLimits, now, until time.Time) (RouteLine, error)
	// LeaveRoute ends a ticket, waiting or admitted; an admission still
	// counts in the last minute's figures.
	LeaveRoute(ctx context.Context, route string, ticket int64, now time.Time) error
	// ThrottleRoute records a 429: the route's factor is lowered and every
	// call held back until now+pause.
	ThrottleRoute(ctx context.Context, route string, now time.Time, pause time.Duration) error
	// PeekRoute is the line as a call joining now would see it (quotes).
	PeekRoute(ctx context.Context, route string, now time.Time) (RouteLine, error)
}

// Gate admits model calls within their routes' limits (llm.Gate) over a
// RouteQueue. Waiting calls look again when their turn may have come:
// soon for the first in line, rarely for those far back, so a line of
// thousands costs the store a few statements a second.
type Gate struct {
	Queue RouteQueue
	Now   func() time.Time
	Log   *slog.Logger

	mu    sync.Mutex
	wakes map[string]chan struct{} // by route: closed when a call of this process leaves it
}

// gateNear is how close to the front a waiting call must be to be woken
// when a call of this process leaves the route (the others only poll): a
// leave wakes a few, never the whole line.
const gateNear = 8

// woken returns the channel closed at the next leave of route here.
func (g *Gate) woken(route string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.wakes == nil {
		g.wakes = map[string]chan struct{}{}
	}
	ch := g.wakes[route]
	if ch == nil {
		ch = make(chan struct{})
		g.wakes[route] = ch
	}
	return ch
}

func (g *Gate) wake(route string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ch := g.wakes[route]; ch != nil {
		close(ch)
		delete(g.wakes, route)
	}
}

var _ llm.Gate = (*Gate)(nil)

const (
	// gateLease is how long an admitted call holds its place in flight
	// without renewal (renewed while it streams): a process that died
	// frees its calls' capacity within it.
	gateLease   = 2 * time.Minute
	gateMinPoll = 20 * time.Millisecond
	gateMaxPoll = 5 * time.Second
)

func (g *Gate) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func (g *Gate) log() *slog.Logger {
	if g.Log != nil {
		return g.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Enter implements llm.Gate.
func (g *Gate) Enter(ctx context.Context, route llm.Route, tokens int64, wait func(llm.Queue)) (llm.Pass, error) {
	lim := route.Limits
	now := g.now()
	ticket, line, err := g.Queue.EnterRoute(ctx, route.ID, tokens, lim, now, now.Add(gateLease))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("queued for %s: %w", route.ID, context.Cause(ctx))
		}
		// The line cannot be kept (the database is away): let the call
		// go, as the run's own writes will fail soon enough if it stays away.
		g.log().Warn("route gate unavailable, call let through", "route", route.ID, "err", err)
		return noPass{}, nil
	}
	db := context.WithoutCancel(ctx)
	for !line.Admitted {
		eta := RouteWait(lim, line, tokens, now)
		if wait != nil {
			wait(llm.Queue{Route: route.ID, Ahead: line.Ahead, Wait: eta})
		}
		poll := pollAfter(line, eta)
		t := time.NewTimer(poll)
		var wake <-chan struct{}
		if line.Ahead < gateNear {
			wake = g.woken(route.ID)
		}
		select {
		case <-wake:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			if err := g.Queue.LeaveRoute(db, route.ID, ticket, g.now()); err != nil {
				g.log().Warn("leave route line", "route", route.ID, "err", err)
			}
			return nil, fmt.Errorf("queued for %s: %w", route.ID, context.Cause(ctx))
		case <-t.C:
		}
		now = g.now()
		// Far back in line, the ticket is kept live past the next look.
		if line, err = g.Queue.AdmitRoute(db, route.ID, ticket, lim, now, now.Add(max(gateLease, 3*poll))); err != nil {
			g.log().Warn("route gate unavailable, call let through", "route", route.ID, "err", err)
			return noPass{}, nil
		}
	}
	p := &pass{g: g, route: route.ID, ticket: ticket, db: db}
	p.renew = time.AfterFunc(gateLease/2, p.extend)
	return p, nil
}

// pollAfter is when a waiting call looks again: when capacity may free up
// for the first in line, about half its expected wait for the others.
func pollAfter(l RouteLine, eta time.Duration) time.Duration {
	d := eta / 2
	if l.Ahead < gateNear {
		d = min(eta, 250*time.Millisecond)
	}
	d = min(max(d, gateMinPoll), gateMaxPoll)
	return d + rand.N(d/4+1) // jitter: waiters far back do not all look at once
}

type pass struct {
	g      *Gate
	route  string
	ticket int64
	db     context.Context
	renew  *time.Timer
	mu     sync.Mutex
	left   bool
}

// extend renews the admitted call's lease while it streams.
func (p *pass) extend() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left {
		return
	}
	now := p.g.now()
	if _, err := p.g.Queue.AdmitRoute(p.db, p.route, p.ticket, RouteLimits{}, now, now.Add(gateLease)); err != nil {
		p.g.log().Warn("renew route lease", "route", p.route, "err", err)
	}
	p.renew.Reset(gateLease / 2)
}

func (p *pass) Leave(throttled bool, retryAfter time.Duration) {
	p.mu.Lock()
	p.left = true
	p.mu.Unlock()
	p.renew.Stop()
	now := p.g.now()
	if throttled {
		if retryAfter <= 0 {
			retryAfter = time.Second
		}
		p.g.log().Info("route throttled: admitted rate lowered", "route", p.route, "retry_after", retryAfter)
		if err := p.g.Queue.ThrottleRoute(p.db, p.route, now, retryAfter); err != nil {
			p.g.log().Warn("throttle route", "route", p.route, "err", err)
		}
	}
	if err := p.g.Queue.LeaveRoute(p.db, p.route, p.ticket, now); err != nil {
		p.g.log().Warn("leave route", "route", p.route, "err", err)
	}
	p.g.wake(p.route)
}

type noPass struct{}

func (noPass) Leave(bool, time.Duration) {}

// Estimate is how long a call of tokens on route would wait if it joined
// the line now (0 for a route without limits, or when unknown).
func (g *Gate) Estimate(ctx context.Context, route llm.Route, tokens int64) time.Duration {
	if g == nil || g.Queue == nil || !route.Limits.Any() {
		return 0
	}
	now := g.now()
	l, err := g.Queue.PeekRoute(ctx, route.ID, now)
	if err != nil {
		return 0
	}
	l.First = l.Ahead == 0
	if Admits(route.Limits, l, tokens, now) {
		return 0
	}
	return RouteWait(route.Limits, l, tokens, now)
}
