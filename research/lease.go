package research

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Crash recovery. River has no job liveness of its own: its rescuer retries a
// job only once it has been running longer than RescueStuckJobsAfter (which
// must exceed the longest run, so about 20 minutes). So a run carries a
// lease: the instance executing it renews it every LeaseTTL/3, and a watcher
// in every forgebot process (Watch) takes over runs whose lease lapsed, which
// means their process died: it cancels the dead job and enqueues a new one in
// one transaction, and the run resumes from its last finished stage on any
// instance. Every write made under a lease is fenced: once the lease moved,
// the old holder's writes are refused (ErrLeaseLost), so a stage is never
// recorded (and paid) twice even when the "dead" process was only stalled.

// DefaultLeaseTTL is how long a run's lease lasts without renewal.
const DefaultLeaseTTL = 10 * time.Second

type leaseKey struct{}

// WithLease marks ctx as acting under owner's lease on the run it writes:
// the store refuses the write with ErrLeaseLost once the lease moved.
func WithLease(ctx context.Context, owner string) context.Context {
	return context.WithValue(ctx, leaseKey{}, owner)
}

// LeaseOf returns the lease owner ctx acts for, if any.
func LeaseOf(ctx context.Context) (string, bool) {
	o, ok := ctx.Value(leaseKey{}).(string)
	return o, ok && o != ""
}

type holderKey struct{}

type holder struct {
	owner string
	until time.Time
}

// WithHolder marks ctx as coming from the engine instance owner, which
// executes the runs it queues itself when its store's queue is its own (the
// demo and `forgebot research`: a local River queue nobody else works). Such
// a store leases each run it enqueues (confirm, resume, take over) to owner
// until until, in the enqueuing transaction, and the owner's watcher renews
// it (RenewLeases): a run that never started still shows its process alive,
// and is taken over within a lease's lifetime once that process dies, not
// left queued for the reaper. A store on the shared queue ignores it: any
// serve instance may start those runs.
func WithHolder(ctx context.Context, owner string, until time.Time) context.Context {
	return context.WithValue(ctx, holderKey{}, holder{owner, until})
}

// HolderOf returns the holder WithHolder set on ctx, if any.
func HolderOf(ctx context.Context) (owner string, until time.Time, ok bool) {
	h, ok := ctx.Value(holderKey{}).(holder)
	return h.owner, h.until, ok && h.owner != ""
}

// holding is ctx with this instance as the holder of the runs it queues.
func (e *Engine) holding(ctx context.Context) context.Context {
	return WithHolder(ctx, e.Instance(), time.Now().Add(e.leaseTTL()))
}

func (e *Engine) leaseTTL() time.Duration {
	if e.LeaseTTL > 0 {
		return e.LeaseTTL
	}
	return DefaultLeaseTTL
}

// Instance names this engine in run leases (random per process).
func (e *Engine) Instance() string {
	e.instanceOnce.Do(func() {
		if e.instance == "" {
			e.instance = newID("i")
		}
	})
	return e.instance
}

// claim takes a run's lease for this instance, has the engine's renewer
// keep it until release, and returns a context that carries the lease and
// is cancelled with ErrLeaseLost when another instance took the run over.
func (e *Engine) claim(ctx context.Context, runID string) (context.Context, func(), error) {
	ttl, owner := e.leaseTTL(), e.Instance()
	db := context.WithoutCancel(ctx)
	if err := e.Store.ClaimRun(db, runID, owner, time.Now(), time.Now().Add(ttl)); err != nil {
		return ctx, func() {}, err
	}
	lctx, lost := context.WithCancelCause(WithLease(ctx, owner))
	l := &heldLease{id: runID, lost: lost}
	e.leaseMu.Lock()
	if e.leases == nil {
		e.leases = map[*heldLease]struct{}{}
	}
	e.leases[l] = struct{}{}
	if !e.renewing {
		e.renewing = true
		go e.renewLeases(owner, ttl)
	}
	e.leaseMu.Unlock()
	return lctx, func() {
		e.leaseMu.Lock()
		delete(e.leases, l)
		e.leaseMu.Unlock()
		lost(nil)
		if err := e.Store.ReleaseLease(db, runID, owner); err != nil {
			e.log().Warn("release run lease", "run_id", runID, "err", err)
		}
	}, nil
}

// heldLease is a run's lease held by an execution in this process.
type heldLease struct {
	id      string
	lost    context.CancelCauseFunc
	failing streak // touched by the renewer only
}

// renewLeases is the engine's one lease renewer (not one goroutine per run):
// every ttl/3 it renews every lease this process's executions hold, and
// cancels, with ErrLeaseLost, the execution of a run another instance took
// over. It ends when no execution holds a lease; the next claim starts it.
func (e *Engine) renewLeases(owner string, ttl time.Duration) {
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	var held []*heldLease
	for range t.C {
		e.leaseMu.Lock()
		if len(e.leases) == 0 {
			e.renewing = false
			e.leaseMu.Unlock()
			return
		}
		held = held[:0]
		for l := range e.leases {
			held = append(held, l)
		}
		e.leaseMu.Unlock()
		// A few statements at a time: a thousand runs' renewals must not
		// take a tick's time one after the other on a slow database.
		const parallel = 8
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		for _, l := range held {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				e.renewLease(l, owner, ttl)
			})
		}
		wg.Wait()
		clear(held)
	}
}

// renewLease renews one held lease.
func (e *Engine) renewLease(l *heldLease, owner string, ttl time.Duration) {
	err := e.Store.RenewLease(context.Background(), l.id, owner, time.Now().Add(ttl))
	e.leaseMu.Lock()
	_, still := e.leases[l]
	e.leaseMu.Unlock()
	switch {
	case !still:
		// Released while renewing: the execution ended, and a lost
		// lease now says nothing.
	case errors.Is(err, ErrLeaseLost):
		e.log().Warn("run lease lost: another instance took the run over", "run_id", l.id)
		l.lost(ErrLeaseLost)
	case err != nil && l.failing.fail():
		e.log().Warn("renew run lease", "run_id", l.id, "err", err, "failures", l.failing.n)
	case err == nil && l.failing.ok() > 0:
		e.log().Info("renew run lease works again", "run_id", l.id)
	}
}

func (e *Engine) isActive(runID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.active[runID]
	return ok
}

// Watch renews, every interval (default LeaseTTL/5), the leases this
// instance holds on runs it queued but is not executing (the heartbeat of a
// process with a queue of its own, see WithHolder), and takes over the runs
// whose lease lapsed, until ctx ends. Every process that can execute runs
// calls it.
func (e *Engine) Watch(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = e.leaseTTL() / 5
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var failing streak
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, err := e.Store.RenewLeases(ctx, e.Instance(), time.Now().Add(e.leaseTTL()))
			if err == nil {
				_, err = e.TakeOver(ctx)
			}
			switch {
			case ctx.Err() != nil:
			case err != nil && failing.fail():
				e.log().Error("watch run leases", "err", err, "failures", failing.n)
			case err == nil && failing.ok() > 0:
				e.log().Info("watch run leases works again")
			}
		}
	}
}

// streak counts a loop's consecutive failures so that it logs the 1st, 2nd,
// 4th, 8th... of them and its recovery: a database outage of a minute costs
// a handful of lines per loop, not one per tick.
type streak struct{ n int }

// fail counts a failure and reports whether to log it.
func (s *streak) fail() bool {
	s.n++
	return s.n&(s.n-1) == 0
}

// ok ends a streak and returns how long it was.
func (s *streak) ok() int {
	n := s.n
	s.n = 0
	return n
}

// TakeOver handles the runs whose lease lapsed once, and returns how many it
// took. A run this process can deliver is resumed (on any instance, through a
// new job); a run bound to a process that died with it (a terminal's
// `forgebot research`) cannot be delivered by anyone: it is settled, charging
// nothing, since nothing of it reached its user. Other runs are left for an
// instance that can deliver them.
func (e *Engine) TakeOver(ctx context.Context) (n int, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errors.Join(err, errors.New("panic taking over runs"))
			e.log().Error("take over panicked", "panic", p)
		}
	}()
	runs, err := e.Store.LapsedRuns(ctx, time.Now(), 100)
	if err != nil {
		return 0, err
	}
	for _, r := range runs {
		if e.isActive(r.ID) {
			continue // ours, renewing late (a stalled database): not dead
		}
		d := r.Request.Dest
		if e.Deliverable != nil && !e.Deliverable(d) {
			if e.Bound == nil || !e.Bound(d) {
				continue
			}
			to, why := Failed, "interrupted: the process running it stopped before delivering it; nothing was charged"
			if r.CancelRequested {
				to, why = Cancelled, "cancelled; the process running it had stopped, so nothing was charged"
			}
			s, err := e.settle(ctx, r.ID, to, "watcher", why, &partialUsage{free: true}, why)
			if err == nil {
				e.publish(e.event(s, why))
				n++
			} else if !errors.Is(err, ErrWrongState) {
				e.log().Error("settle a lapsed run", "run_id", r.ID, "err", err)
			}
			continue
		}
		if _, err := e.Store.TakeOverRun(e.holding(ctx), r.ID, time.Now(), Plans[r.Request.Depth].RuntimeHigh); err != nil {
			if !errors.Is(err, ErrWrongState) {
				e.log().Error("take over a run", "run_id", r.ID, "err", err)
			}
			continue
		}
		e.log().Info("run taken over: its process stopped renewing its lease", "run_id", r.ID, "state", string(r.State))
		n++
	}
	ended, err := e.Store.EndedLapsed(ctx, time.Now(), 100)
	if err != nil {
		return n, err
	}
	for _, r := range ended {
		if e.isActive(r.ID) || (e.Deliverable != nil && !e.Deliverable(r.Request.Dest) && (e.Bound == nil || !e.Bound(r.Request.Dest))) {
			continue
		}
		if ok, err := e.Store.ClearLapsedLease(ctx, r.ID, time.Now()); err != nil || !ok {
			continue
		}
		if e.Deliverable != nil && !e.Deliverable(r.Request.Dest) {
			continue // bound to a dead terminal: nobody to tell
		}
		e.republish(ctx, r)
		n++
	}
	return n, nil
}

// republish publishes the final event of a run whose process died after
// settling it, perhaps before its final message was handed over (the outbox
// keeps one final per run, so one already kept is not sent again). The
// report is rebuilt from the stored stages; the chart is not.
func (e *Engine) republish(ctx context.Context, r Run) {
	ev := e.event(r, "")
	if r.Agent != nil && (r.State == Succeeded || r.State == Partial || r.State == Cancelled) {
		rep, _ := e.agentReport(ctx, r)
		rep.Missing = r.Error
		ev.Report = &rep
	} else if r.State == Succeeded || r.State == Partial {
		g := e.gatherRun(ctx, r, Plans[r.Request.Depth])
		rep := e.report(r, g)
		rep.Missing = r.Missing
		ev.Report = &rep
	}
	e.log().Info("final event published again: the run's process died after settling it", "run_id", r.ID)
	e.publish(ev)
}
