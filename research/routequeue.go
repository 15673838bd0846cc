package research

import (
	"context"
	"sync"
	"time"
)

// MemoryRouteQueue is a RouteQueue in this process's memory: for SQLite,
// whose one process is every caller of its routes. The zero value is ready.
type MemoryRouteQueue struct {
	mu     sync.Mutex
	next   int64
	routes map[string]*memRoute
}

var _ RouteQueue = (*MemoryRouteQueue)(nil)

type memRoute struct {
	factor      float64
	factorAt    time.Time
	pausedUntil time.Time
	tickets     []*memTicket // in arrival order; ended ones are dropped once out of every window
}

type memTicket struct {
	id         int64
	tokens     int64
	until      time.Time // live until (waiting), or the lease (admitted)
	admittedAt time.Time
	leftAt     time.Time
}

func (q *MemoryRouteQueue) route(id string, now time.Time) *memRoute {
	if q.routes == nil {
		q.routes = map[string]*memRoute{}
	}
	r := q.routes[id]
	if r == nil {
		r = &memRoute{factor: 1, factorAt: now}
		q.routes[id] = r
	}
	return r
}

// EnterRoute implements RouteQueue.
func (q *MemoryRouteQueue) EnterRoute(_ context.Context, route string, tokens int64, lim RouteLimits, now, until time.Time) (int64, RouteLine, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.route(route, now)
	r.prune(now)
	q.next++
	t := &memTicket{id: q.next, tokens: tokens, until: until}
	r.tickets = append(r.tickets, t)
	return t.id, r.admit(t, lim, now, until), nil
}

// AdmitRoute implements RouteQueue.
func (q *MemoryRouteQueue) AdmitRoute(_ context.Context, route string, ticket int64, lim RouteLimits, now, until time.Time) (RouteLine, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.route(route, now)
	for _, t := range r.tickets {
		if t.id == ticket && t.leftAt.IsZero() {
			return r.admit(t, lim, now, until), nil
		}
	}
	return RouteLine{Admitted: true}, nil // gone (pruned): nothing to hold it back for
}

// LeaveRoute implements RouteQueue.
func (q *MemoryRouteQueue) LeaveRoute(_ context.Context, route string, ticket int64, now time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.route(route, now)
	for _, t := range r.tickets {
		if t.id == ticket && t.leftAt.IsZero() {
			t.leftAt = now
		}
	}
	r.prune(now)
	return nil
}

// ThrottleRoute implements RouteQueue.
func (q *MemoryRouteQueue) ThrottleRoute(_ context.Context, route string, now time.Time, pause time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.route(route, now)
	r.factor, r.factorAt = ThrottledFactor(RouteFactor(r.factor, r.factorAt, now)), now
	if until := now.Add(pause); until.After(r.pausedUntil) {
		r.pausedUntil = until
	}
	return nil
}

// PeekRoute implements RouteQueue.
func (q *MemoryRouteQueue) PeekRoute(_ context.Context, route string, now time.Time) (RouteLine, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.route(route, now).line(nil, now), nil
}

// admit admits t if it is first and lim has room; either way t stays live
// until until. Called with the queue locked.
func (r *memRoute) admit(t *memTicket, lim RouteLimits, now, until time.Time) RouteLine {
	t.until = until
	if !t.admittedAt.IsZero() {
		return RouteLine{Admitted: true}
	}
	l := r.line(t, now)
	if Admits(lim, l, t.tokens, now) {
		t.admittedAt = now
		l.Admitted = true
	}
	return l
}

// line is t's view of the route (nil: a call joining now).
func (r *memRoute) line(t *memTicket, now time.Time) RouteLine {
	l := RouteLine{First: true, Factor: RouteFactor(r.factor, r.factorAt, now), PausedUntil: r.pausedUntil}
	var calls, n time.Duration
	for _, o := range r.tickets {
		switch {
		case o == t:
		case o.admittedAt.IsZero():
			// Waiting before t: live, not left, and t not yet reached.
			if o.leftAt.IsZero() && o.until.After(now) && (t == nil || o.id < t.id) {
				l.First = false
				l.Ahead++
				l.AheadTokens += o.tokens
			}
		default:
			if o.leftAt.IsZero() && o.until.After(now) {
				l.InFlight++
			}
			if now.Sub(o.admittedAt) < routeWindow+RouteMargin {
				l.Started++
				l.Tokens += o.tokens
				if now.Sub(o.admittedAt) < routeSlice+RouteMargin {
					l.Started10++
					l.Tokens10 += o.tokens
				}
			}
			if !o.leftAt.IsZero() && now.Sub(o.leftAt) < routeWindow {
				calls += o.leftAt.Sub(o.admittedAt)
				n++
			}
		}
	}
	if n > 0 {
		l.AvgCall = calls / n
	}
	return l
}

// prune drops tickets that no longer count: ended (or dead) and out of
// every window.
func (r *memRoute) prune(now time.Time) {
	keep := r.tickets[:0]
	for _, t := range r.tickets {
		ended := !t.leftAt.IsZero() || !t.until.After(now)
		recent := !t.admittedAt.IsZero() && now.Sub(t.admittedAt) < routeWindow+RouteMargin ||
			!t.leftAt.IsZero() && now.Sub(t.leftAt) < routeWindow
		if !ended || recent {
			keep = append(keep, t)
		}
	}
	clear(r.tickets[len(keep):])
	r.tickets = keep
}
