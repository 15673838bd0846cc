package research

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/market"
)

// Ledger is what the engine needs of billing: accounts and balances. Money
// moves only through Store's transactions.
type Ledger interface {
	EnsureAccount(ctx context.Context, id billing.Identity) (billing.AccountID, error)
	AccountOf(ctx context.Context, id billing.Identity) (billing.AccountID, error)
	Balances(ctx context.Context, id billing.AccountID) (billing.Balances, error)
	RecordFailedRequest(ctx context.Context, f billing.FailedRequest) (billing.FailedRequest, error)
	// Hold returns a hold (billing.ErrUnknownHold): a run whose hold lapsed,
	// or would lapse before it could finish, is not started.
	Hold(ctx context.Context, id int64) (billing.Hold, error)
}

// Engine quotes, confirms, executes, cancels, pauses and settles runs.
type Engine struct {
	Store   Store
	Ledger  Ledger
	Catalog *Catalog
	Market  market.Provider
	LLM     Writer // API routes
	Offline Writer // the offline route
	Health  *llm.Health
	// Gate admits model calls within their routes' limits; the same one is
	// the LLM client's (llm.Client.Gate). Quotes add its expected wait.
	Gate *Gate
	Sink Sink
	// Benchmarks names the symbol each asset class's relative strength is measured against; a class not
	// listed uses DefaultBenchmark (SPY), one listed with "" has none.
	Benchmarks map[market.AssetClass]string

	Now      func() time.Time
	QuoteTTL time.Duration // default 10 min
	PauseTTL time.Duration // a paused run expires after this; default 1 h
	// ProgressEvery bounds how often a streaming stage publishes progress
	// (default 250 ms); the outbox coalesces further per message.
	ProgressEvery time.Duration
	ReceiptURL    func(publicID string) string
	Admins        []billing.Identity
	// AskTimeout is how long an agent run waits for its owner's answer to
	// an ask-to-continue before it wraps up (default DefaultAskTimeout).
	AskTimeout time.Duration
	// SpendDefaults are the operator's spend limits for accounts that set
	// none; the store enforces limits in the transaction placing the hold.
	SpendDefaults billing.Limits
	Log           *slog.Logger

	// Crash recovery (lease.go): how long a run's lease lasts unrenewed
	// (default 10 s); which destinations this process can deliver to (nil:
	// all); which are bound to a process that dies with them (a terminal).
	LeaseTTL     time.Duration
	Deliverable  func(Destination) bool
	Bound        func(Destination) bool
	instance     string
	instanceOnce sync.Once

	mu      sync.Mutex
	active  map[string]context.CancelCauseFunc // runs executing in this process
	pausing map[string]bool                    // of those, the ones asked to pause here
	charts  market.ChartCache                  // charts drawn, shared by runs of the same data
	cancels sync.Map                           // run id -> when this process was asked to cancel it

	leaseMu  sync.Mutex
	leases   map[*heldLease]struct{} // leases held by executions here (lease.go)
	renewing bool                    // the renewer is running
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (e *Engine) publish(ev Event) {
	if e.Sink != nil {
		e.Sink.Publish(ev)
	}
}

// newID returns an opaque, unguessable id with a prefix.
func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// MayAct reports whether who may confirm, cancel or pause what owner started.
func (e *Engine) MayAct(who, owner billing.Identity) bool {
	return who == owner || slices.Contains(e.Admins, who)
}

// IsAdmin reports whether who is a configured admin.
func (e *Engine) IsAdmin(who billing.Identity) bool { return slices.Contains(e.Admins, who) }

// Snapshot is the progress event a stored run shows now.
func (e *Engine) Snapshot(r Run, note string) Event { return e.event(r, note) }

type adminKey struct{}

// WithAdmin marks a request as coming from a platform admin (a Discord admin
// role, say). Only adapters set it, from what the platform verified.
func WithAdmin(ctx context.Context) context.Context { return context.WithValue(ctx, adminKey{}, true) }

// maySpend checks that who acts for the account that pays (linked identities
// of the owner count as the owner), or is an admin.
func (e *Engine) maySpend(ctx context.Context, who billing.Identity, owner billing.Identity, account billing.AccountID) bool {
	if e.MayAct(who, owner) || ctx.Value(adminKey{}) == true {
		return true
	}
	acc, err := e.Ledger.AccountOf(ctx, who)
	return err == nil && acc == account
}

// holdTTL outlives every way a run can end on its own, so the sweeper only
// ever releases holds of runs whose process vanished.
func (e *Engine) holdTTL(p Plan) time.Duration {
	return p.RuntimeHigh*3 + e.pauseTTL() + 15*time.Minute
}

func (e *Engine) pauseTTL() time.Duration {
	if e.PauseTTL > 0 {
		return e.PauseTTL
	}
	return time.Hour
}

// writer returns the Writer for a run's routes.
func (e *Engine) writer(offline bool) Writer {
	if offline {
		return e.Offline
	}
	return e.LLM
}

// Confirm turns an open quote into a queued run: the hold, the run and its
// job commit together. An expired quote, or one whose price or balance
// changed, is not run: a fresh quote comes back with ErrQuoteExpired,
// ErrQuoteChanged or ErrInsufficient.
func (e *Engine) Confirm(ctx context.Context, quoteID string, who billing.Identity, dest *Destination) (Run, Quote, error) {
	q, err := e.Store.Quote(ctx, quoteID)
	if err != nil {
		return Run{}, Quote{}, err
	}
	if !e.maySpend(ctx, who, q.Request.Owner, q.AccountID) {
		return Run{}, q, ErrForbidden
	}
	if q.Status == QuoteConfirmed {
		r, err := e.Store.Run(ctx, q.RunID)
		if err != nil {
			return Run{}, q, err
		}
		return r, q, fmt.Errorf("%w: already confirmed", ErrQuoteUsed)
	}
	if q.Status != QuoteOpen {
		return Run{}, q, fmt.Errorf("%w: quote is %s", ErrQuoteUsed, q.Status)
	}
	requote := func(cause error) (Run, Quote, error) {
		q.Status = QuoteExpired
		_ = e.Store.SaveQuote(ctx, q)
		req := q.Request
		if dest != nil {
			req.Dest = *dest
		}
		nq, err := e.Quote(ctx, req)
		if err != nil {
			return Run{}, q, err
		}
		return Run{}, nq, cause
	}
	if !e.now().Before(q.ExpiresAt) {
		return requote(ErrQuoteExpired)
	}
	route := e.Catalog.Route(q.RouteID)
	if route == nil || !route.Enabled || route.Price != q.Price {
		return requote(ErrQuoteChanged)
	}
	chain, err := e.Catalog.Chain(q.Model, q.RouteKind, q.Request.Consent)
	if err != nil {
		return requote(ErrQuoteChanged)
	}
	if q.FallbackBucket == "" { // the quote left the other bucket out
		chain = slices.DeleteFunc(chain, func(r llm.Route) bool { return r.Bucket() != q.Bucket })
	}
	plan := Plans[q.Request.Depth]
	run := Run{
		ID: newID("r"), QuoteID: q.ID, AccountID: q.AccountID, Owner: q.Request.Owner, Request: q.Request,
		Symbols: q.Symbols, Scan: q.Scan, Stages: q.Stages, Outputs: map[int]string{}, RouteID: q.RouteID, Model: q.Model,
		RouteKind: q.RouteKind, Offline: q.Offline, Price: q.Price, Bucket: q.Bucket, Synthetic: q.Synthetic,
		Agent: q.newAgent(),
	}
	run.Prices, run.Buckets = map[string]billing.Price{}, map[string]billing.Bucket{}
	for _, r := range chain {
		run.Chain = append(run.Chain, r.ID)
		run.Prices[r.ID], run.Buckets[r.ID] = r.Price, r.Bucket()
	}
	if dest != nil {
		run.Request.Dest = *dest
	}
	holds := []billing.HoldRequest{{
		AccountID: q.AccountID, Bucket: q.Bucket, Amount: q.Hold, TTL: e.holdTTL(plan),
		Key: "run:" + run.ID + ":hold", Reference: "run:" + run.ID, Actor: who.String(), DefaultLimits: e.SpendDefaults,
	}}
	run.FallbackBucket = q.FallbackBucket
	if q.FallbackHold > 0 { // free fallback routes need no hold
		holds = append(holds, billing.HoldRequest{
			AccountID: q.AccountID, Bucket: q.FallbackBucket, Amount: q.FallbackHold, TTL: e.holdTTL(plan),
			Key: "run:" + run.ID + ":fallback-hold", Reference: "run:" + run.ID + ":fallback", Actor: who.String(),
			DefaultLimits: e.SpendDefaults,
		})
	}
	run, err = e.Store.ConfirmQuote(e.holding(ctx), q.ID, run, holds, plan.RuntimeHigh)
	if errors.Is(err, billing.ErrInsufficientFunds) {
		return requote(ErrInsufficient)
	}
	if err != nil {
		return Run{}, q, err
	}
	e.log().Info("run confirmed", "run_id", run.ID, "hold", run.Hold.String(), "bucket", string(run.Bucket))
	e.publish(e.event(run, "queued"))
	return run, q, nil
}

// Decline closes an open quote without running it.
func (e *Engine) Decline(ctx context.Context, quoteID string, who billing.Identity) (Quote, error) {
	q, err := e.Store.Quote(ctx, quoteID)
	if err != nil {
		return q, err
	}
	if !e.maySpend(ctx, who, q.Request.Owner, q.AccountID) {
		return q, ErrForbidden
	}
	if q.Status != QuoteOpen {
		return q, fmt.Errorf("%w: quote is %s", ErrQuoteUsed, q.Status)
	}
	q.Status = QuoteDeclined
	return q, e.Store.SaveQuote(ctx, q)
}

// event builds a progress event from a stored run.
func (e *Engine) event(r Run, note string) Event {
	ev := Event{Run: r, StageCount: len(r.Stages), TokensIn: r.TokensIn, TokensOut: r.TokensOut, Cost: r.Cost(), Note: note}
	ev.Stage = min(r.Done+1, len(r.Stages))
	if ev.Stage > 0 {
		ev.StageName = r.Stages[ev.Stage-1].Name
	}
	if len(r.Stages) > 0 {
		ev.Percent = 100 * r.Done / len(r.Stages)
	}
	if r.Agent != nil {
		agentEvent(&ev, r)
	}
	if !r.StartedAt.IsZero() {
		end := e.now()
		if !r.FinishedAt.IsZero() {
			end = r.FinishedAt
		}
		ev.Elapsed = end.Sub(r.StartedAt)
		if r.Done > 0 && r.Done < len(r.Stages) {
			ev.Remaining = ev.Elapsed * time.Duration(len(r.Stages)-r.Done) / time.Duration(r.Done)
		}
	}
	if r.State.Terminal() {
		ev.Final, ev.Percent = true, 100
		asked := r.CancelRequestedAt
		if at, ok := e.cancels.LoadAndDelete(r.ID); ok && (asked.IsZero() || at.(time.Time).Before(asked)) {
			asked = at.(time.Time)
		}
		if r.State == Cancelled && !asked.IsZero() && r.FinishedAt.After(asked) {
			ev.CancelLatency = r.FinishedAt.Sub(asked)
		}
		if r.ReceiptID != "" && e.ReceiptURL != nil {
			ev.ReceiptURL = e.ReceiptURL(r.ReceiptID)
		}
	}
	return ev
}

// Cancel stops a run for its owner or an admin. A queued or paused run is
// settled at once; a running one has its stream closed (in this process at
// once, elsewhere through the queue) and settles as it stops.
func (e *Engine) Cancel(ctx context.Context, runID string, who billing.Identity) (Run, error) {
	r, err := e.Store.Run(ctx, runID)
	if err != nil {
		return r, err
	}
	if !e.maySpend(ctx, who, r.Owner, r.AccountID) {
		return r, ErrForbidden
	}
	if r.State.Terminal() {
		return r, fmt.Errorf("%w: the run already %s", ErrWrongState, r.State)
	}
	if r.State == Queued || r.State == Paused || (r.State == Pausing && r.StartedAt.IsZero()) {
		// Nothing is streaming: a paused run, or one that never started
		// (queued, or paused before it started), settles at once.
		if err := e.Store.CancelJob(ctx, r.JobID); err != nil {
			e.log().Warn("cancel job", "run_id", r.ID, "err", err)
		}
		if r.Agent != nil && len(r.Agent.Steps) > 0 {
			// A paused agent run shows what its steps found.
			_, err = e.agentSettle(ctx, r, Cancelled, "cancelled while paused", nil, "the run was cancelled before its answer", who.String())
			if err == nil {
				return e.Store.Run(ctx, r.ID)
			}
		} else if r, err = e.settle(ctx, r.ID, Cancelled, who.String(), "cancelled before running", nil, ""); err == nil {
			e.publish(e.event(r, "cancelled"))
			// The final is handed over: a lease this process took when it
			// queued the run (WithHolder) has nothing left to guard.
			if err := e.Store.ReleaseLease(context.WithoutCancel(ctx), r.ID, e.Instance()); err != nil {
				e.log().Warn("release run lease", "run_id", r.ID, "err", err)
			}
		}
		if !errors.Is(err, ErrWrongState) {
			return r, err
		}
		// It started meanwhile: cancel it as a running run.
	}
	// A run streaming in this process stops at once, before any write: its
	// worker sees the cause and settles it as cancelled.
	e.cancels.Store(runID, e.now())
	local := e.interrupt(runID, ErrCancelled)
	r, err = e.Store.UpdateRun(ctx, runID, who.String(), "cancel requested", func(r *Run) error {
		if r.State.Terminal() {
			return fmt.Errorf("%w: the run already %s", ErrWrongState, r.State)
		}
		r.CancelRequested, r.State = true, Cancelling
		if r.CancelRequestedAt.IsZero() {
			r.CancelRequestedAt = e.now()
		}
		return nil
	})
	if errors.Is(err, ErrWrongState) && local {
		// The worker settled it first: the cancel did what was asked.
		if cur, rerr := e.Store.Run(ctx, runID); rerr == nil && cur.State == Cancelled {
			return cur, nil
		}
	}
	if err != nil {
		return r, err
	}
	if local {
		return r, nil // the worker publishes the final state at once
	}
	e.publish(e.event(r, "cancelling"))
	if err := e.Store.CancelJob(ctx, r.JobID); err != nil {
		return r, fmt.Errorf("cancel job: %w", err)
	}
	return r, nil
}

// Redirect points a live run's progress at another message.
func (e *Engine) Redirect(ctx context.Context, runID string, who billing.Identity, d Destination) error {
	r, err := e.Store.Run(ctx, runID)
	if err != nil {
		return err
	}
	if !e.maySpend(ctx, who, r.Owner, r.AccountID) {
		return ErrForbidden
	}
	_, err = e.Store.UpdateRun(ctx, runID, who.String(), "progress moved", func(r *Run) error {
		r.Request.Dest = d
		return nil
	})
	return err
}

// Pause asks a running run to stop at its next stage boundary, keeping its hold.
func (e *Engine) Pause(ctx context.Context, runID string, who billing.Identity) (Run, error) {
	r, err := e.Store.Run(ctx, runID)
	if err != nil {
		return r, err
	}
	if !e.maySpend(ctx, who, r.Owner, r.AccountID) {
		return r, ErrForbidden
	}
	r, err = e.Store.UpdateRun(ctx, runID, who.String(), "pause requested", func(r *Run) error {
		if r.State != Running && r.State != Queued {
			return fmt.Errorf("%w: a %s run cannot be paused", ErrWrongState, r.State)
		}
		r.PauseRequested, r.State = true, Pausing
		return nil
	})
	if err == nil {
		e.markPausing(runID, true)
		e.publish(e.event(r, "pausing at the next stage"))
	}
	return r, err
}

// Resume continues a paused run from its last finished stage (or withdraws a
// pause request that has not taken effect yet).
func (e *Engine) Resume(ctx context.Context, runID string, who billing.Identity) (Run, error) {
	r, err := e.Store.Run(ctx, runID)
	if err != nil {
		return r, err
	}
	if !e.maySpend(ctx, who, r.Owner, r.AccountID) {
		return r, ErrForbidden
	}
	switch r.State {
	case Pausing:
		r, err = e.Store.UpdateRun(ctx, runID, who.String(), "pause withdrawn", func(r *Run) error {
			if r.State != Pausing {
				return fmt.Errorf("%w: run is %s", ErrWrongState, r.State)
			}
			r.PauseRequested, r.State = false, Running
			if r.StartedAt.IsZero() {
				r.State = Queued // paused before it ever started
			}
			return nil
		})
		e.markPausing(runID, false)
		if errors.Is(err, ErrWrongState) {
			return e.Resume(ctx, runID, who) // it paused meanwhile: resume it from there
		}
	case Paused:
		if r.Agent != nil && r.Agent.Ask != nil {
			return r, fmt.Errorf("%w: the run is asking whether to go on: answer with Continue, Wrap up or Cancel", ErrWrongState)
		}
		plan := Plans[r.Request.Depth]
		r, err = e.Store.RequeueRun(e.holding(ctx), runID, who.String(), "resumed", plan.RuntimeHigh, e.holdTTL(plan))
	default:
		return r, fmt.Errorf("%w: a %s run cannot be resumed", ErrWrongState, r.State)
	}
	if err == nil {
		e.publish(e.event(r, "resumed"))
	}
	return r, err
}

// interrupt cancels a run executing in this process.
func (e *Engine) interrupt(runID string, cause error) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	cancel, ok := e.active[runID]
	if ok {
		cancel(cause)
	}
	return ok
}

func (e *Engine) track(runID string, cancel context.CancelCauseFunc) func() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.active == nil {
		e.active = map[string]context.CancelCauseFunc{}
	}
	e.active[runID] = cancel
	return func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.active, runID)
		delete(e.pausing, runID)
	}
}

// markPausing notes a pause asked for a run executing here, so progress
// published mid-stage shows "pausing" rather than the stage's stale state.
func (e *Engine) markPausing(runID string, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.active[runID]; !ok {
		return
	}
	if e.pausing == nil {
		e.pausing = map[string]bool{}
	}
	if on {
		e.pausing[runID] = true
	} else {
		delete(e.pausing, runID)
	}
}

func (e *Engine) pauseAsked(runID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pausing[runID]
}

// Reap settles runs that nobody will finish: paused runs past PauseTTL expire;
// live runs untouched for staleAfter (their process died and the queue gave
// up) fail as interrupted. It returns how many it settled.
//
// Either way the user pays only for what they receive: stages written
// before the run stopped are delivered in a partial report and charged;
// a run with nothing written ends at $0. A panic settling one run is
// recovered and logged with a reference; the others are still reaped.
func (e *Engine) Reap(ctx context.Context, staleAfter time.Duration) (int, error) {
	// An agent run asking its owner wraps up when the answer is late:
	// before the pause expiry below could end it.
	n, err := e.reapAsks(ctx)
	if err != nil {
		return n, err
	}
	paused, err := e.Store.StaleRuns(ctx, []State{Paused}, e.now().Add(-e.pauseTTL()), 100)
	if err != nil {
		return n, err
	}
	for _, r := range paused {
		if e.reapOne(ctx, r, Expired, "paused too long") {
			n++
		}
	}
	stale, err := e.Store.StaleRuns(ctx, []State{Queued, Running, Pausing, Cancelling}, e.now().Add(-staleAfter), 100)
	if err != nil {
		return n, err
	}
	for _, r := range stale {
		to, why := Failed, "interrupted: the run stopped making progress"
		if r.CancelRequested {
			to, why = Cancelled, "cancelled"
		}
		if e.reapOne(ctx, r, to, why) {
			n++
		}
	}
	return n, nil
}

// reapOne settles one run the reaper found, reporting whether it did.
func (e *Engine) reapOne(ctx context.Context, r Run, to State, why string) (done bool) {
	var err error
	defer func() {
		if err != nil {
			done = false
			e.log().Error("reap run", "run_id", r.ID, "err", err)
		}
	}()
	defer e.recoverPanic("reap run", r.ID, &err) // runs first: recover must be called by the deferred function itself
	if r.Agent != nil && len(r.Agent.Steps) > 0 {
		// What the steps found is delivered; the steps used are charged
		// (a cancel too: they were made before it).
		var state State
		if to == Cancelled {
			state = Cancelled
		}
		var settled bool
		settled, err = e.agentSettle(ctx, r, state, why, nil, "not finished: "+why, "reaper")
		if errors.Is(err, ErrWrongState) {
			err = nil
		}
		return err == nil && settled
	}
	if to != Cancelled && wroteAny(r) {
		// Deliver what was written rather than charge for text nobody sees.
		plan := Plans[r.Request.Depth]
		fetch, cancel := context.WithTimeout(ctx, 30*time.Second)
		g := e.gatherRun(fetch, r, plan)
		cancel()
		missing := stageNames(r.Stages[min(r.Done, len(r.Stages)):])
		if r.Missing != "" {
			missing = r.Missing
		} else if missing != "" {
			missing += ": not run: " + why
		}
		var settled bool
		settled, err = e.deliverAs(ctx, r, g, plan, missing, why, "reaper")
		return err == nil && settled
	}
	var final Run
	final, err = e.settle(ctx, r.ID, to, "reaper", why, nil, "")
	if err != nil {
		if errors.Is(err, ErrWrongState) {
			err = nil // settled meanwhile by someone else
		}
		return false
	}
	e.publish(e.event(final, why))
	return true
}

// recoverPanic, deferred, turns a panic into an error with a reference that
// is logged with the stack, so one bad run cannot take the process down.
func (e *Engine) recoverPanic(what, runID string, errp *error) {
	v := recover()
	if v == nil {
		return
	}
	ref := newID("")[:8]
	e.log().Error("panic recovered", "what", what, "run_id", runID, "ref", ref, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	*errp = fmt.Errorf("internal error in %s (ref %s)", what, ref)
}

// RunReaper reaps every interval until ctx ends.
func (e *Engine) RunReaper(ctx context.Context, every, staleAfter time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := e.Reap(ctx, staleAfter); err != nil && ctx.Err() == nil {
				e.log().Error("reap runs", "err", err)
			}
			e.pruneCancels(e.now().Add(-staleAfter))
		}
	}
}

// pruneCancels forgets cancel requests older than before: their run
// settled on another instance (whose final event would have removed them
// here), so the map does not grow with every cancel ever asked.
func (e *Engine) pruneCancels(before time.Time) int {
	n := 0
	e.cancels.Range(func(k, v any) bool {
		if v.(time.Time).Before(before) {
			e.cancels.Delete(k)
			n++
		}
		return true
	})
	return n
}

// settle ends a run: it captures the usage recorded on the run plus extra
// (the interrupted stage's delivered tokens), releases the rest of the hold,
// and writes the receipt and the terminal state in one transaction. The
// caller publishes the final event.
func (e *Engine) settle(ctx context.Context, runID string, to State, actor, reason string, extra *partialUsage, errText string) (Run, error) {
	ctx = context.WithoutCancel(ctx) // settling must finish even when the run was cancelled
	var capture, fallback billing.Money
	free := ""
	// charge runs on the run as locked by the settle's transaction: what it
	// captures is priced from the usage stored at that moment, read once.
	charge := func(r *Run) (billing.Money, billing.Money) {
		if extra != nil && !extra.free {
			r.ByRoute = maps.Clone(r.ByRoute)
			r.addUsage(extra.route, extra.usage.PromptTokens, extra.usage.CompletionTokens)
			r.InSource = worseSource(r.InSource, extra.usage.PromptSource)
			r.OutSource = worseSource(r.OutSource, extra.usage.CompletionSource)
		}
		var overflow, err error
		capture, overflow = r.CostInChecked(r.Bucket)
		fallback = 0
		if r.FallbackHoldID != 0 {
			fallback, err = r.CostInChecked(r.FallbackBucket)
			overflow = cmp.Or(overflow, err)
		}
		free = ""
		switch {
		case overflow != nil:
			// Usage no Money can price is not usage anyone can be charged for.
			e.log().Error("run usage overflows", "run_id", runID, "err", overflow)
			free = "the recorded usage could not be priced, so nothing was charged"
		case to == Failed:
			free = "a failed run costs nothing"
		case to == Expired:
			free = "nothing was delivered, so nothing was charged"
		}
		if free != "" || (extra != nil && extra.free) { // nothing reached the user
			capture, fallback = 0, 0
		}
		return capture, fallback
	}
	r, err := e.Store.SettleRun(ctx, runID, actor, reason, charge, func(r *Run, rc *billing.Receipt) error {
		r.State, r.Error = to, errText
		paid := r.TokensPaidBy(r.Bucket)
		rc.TokensIn, rc.TokensOut = paid.In, paid.Out
		rc.Route = r.RouteOf(r.Bucket)
		rc.TokensInSource, rc.TokensOutSource = orLocal(r.InSource), orLocal(r.OutSource)
		var notes []string
		if r.Synthetic {
			notes = append(notes, "market data: SYNTHETIC demo series, not real prices")
		}
		if r.Offline {
			notes = append(notes, "written by the rule-based offline analyst, not an LLM")
		}
		if r.CrossBucket {
			notes = append(notes, fmt.Sprintf("fell back to a route of the other bucket, with the consent given in the quote; your %s paid those tokens (its own receipt)", r.FallbackBucket))
		}
		if capture > r.Cap() {
			notes = append(notes, fmt.Sprintf("usage cost %s exceeded the hold; only the hold was charged", capture))
		}
		if r.Agent != nil {
			notes = append(notes, agentNotes(*r)...)
			rc.Steps = receiptSteps(r.Agent)
		}
		if r.FallbackHoldID != 0 && fallback > r.FallbackHold {
			notes = append(notes, fmt.Sprintf("fallback usage cost %s exceeded its hold; only the hold was charged", fallback))
		}
		if len(r.SymbolErrors) > 0 {
			notes = append(notes, fmt.Sprintf("%d symbol(s) failed and were not charged", len(r.SymbolErrors)))
		}
		if len(r.Anomalies) > 0 {
			notes = append(notes, "usage not believed, the local count was charged: "+strings.Join(r.Anomalies, "; "))
		}
		if reason != "" {
			notes = append(notes, reason)
		}
		if errText != "" && to == Partial {
			notes = append(notes, "not delivered and not charged: "+errText)
		}
		if free != "" {
			notes = append(notes, free)
		}
		rc.Notes = strings.Join(notes, "; ")
		return nil
	})
	if err != nil {
		return r, err
	}
	e.log().Info("run settled", "run_id", r.ID, "state", string(r.State), "captured", r.Captured.String())
	e.observe(ctx, r)
	return r, nil
}

// partialUsage is what an interrupted call used, and on which route.
type partialUsage struct {
	route string
	usage llm.Usage
	free  bool // charge nothing: nothing of the run reached its user
	// maxOut is the call's output limit: what a route that bills the whole
	// response after a close charges for a cancelled call (asBilled).
	maxOut int64
}

// asBilled is what a call cancelled mid-stream costs on its route: what
// was delivered where closing the stream stops the provider's billing;
// the prompt and the whole output limit where the route bills the full
// response anyway (the catalog's close_stops_billing: false). The call's
// reservation covered that, so it stays within the hold.
func (e *Engine) asBilled(p *partialUsage) *partialUsage {
	if p == nil || p.free || p.route == "" {
		return p
	}
	rt := e.Catalog.Route(p.route)
	if rt == nil || !rt.BillsAfterClose || p.maxOut <= 0 {
		return p
	}
	out := *p
	out.usage.CompletionTokens = max(out.usage.CompletionTokens, p.maxOut)
	out.usage.CompletionSource = billing.UsageLocal
	return &out
}

func worseSource(a, b billing.UsageSource) billing.UsageSource {
	if a == billing.UsageLocal || b == billing.UsageLocal {
		return billing.UsageLocal
	}
	if a == "" {
		return b
	}
	return a
}

func orLocal(s billing.UsageSource) billing.UsageSource {
	if s == "" {
		return billing.UsageProvider
	}
	return s
}
