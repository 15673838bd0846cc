package research

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tokensforge/forgebot/billing"

	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/market"
)

// Execute runs a queued run to its end, holding the run's lease (lease.go)
// while it does. The queue calls it; after a crash the run is taken over
// through a new job (or River's rescuer retries the old one, the last
// resort), and that execution resumes from the last finished stage. Every way out settles the hold exactly once, except a
// pause (asked for, or a server shutting down), which keeps the hold until
// Resume or the pause's expiry. A panic is recovered, logged with a
// reference and returned as an error, so no input takes the process down.
func (e *Engine) Execute(ctx context.Context, runID string, attempt, maxAttempts int) (err error) {
	outer := ctx // without the lease, which is released by then
	defer func() {
		if err != nil && !errors.Is(err, ErrLeaseHeld) {
			e.giveUp(outer, runID, attempt, maxAttempts, err)
		}
	}()
	defer e.recoverPanic("execute run", runID, &err) // runs first: a panic is an error like any other
	if e.isActive(runID) {
		return nil // a second delivery of the job while this process runs it
	}
	// The run's lease tells other instances this one is alive; a run whose
	// lease is held by a live instance is not run twice (ErrLeaseHeld: the
	// queue tries again shortly, in case that instance just released it).
	ctx, release, err := e.claim(ctx, runID)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrWrongState):
		return nil // gone, ended or paused: nothing to do
	case err != nil:
		return err
	}
	defer release()
	err = e.execute(ctx, runID, attempt, maxAttempts)
	if errors.Is(err, ErrLeaseLost) || errors.Is(context.Cause(ctx), ErrLeaseLost) {
		return nil // the instance that took the run over finishes it
	}
	return err
}

// giveUp ends a run whose job failed its last attempt (the queue discards
// the job after it, so nothing would run it again): it is settled at once as
// the reaper would settle it — what was written delivered and charged, the
// rest released — instead of keeping its hold until the reaper's hour. When
// even that fails (the database still down), the reaper ends it later.
func (e *Engine) giveUp(ctx context.Context, runID string, attempt, maxAttempts int, cause error) {
	if maxAttempts <= 0 || attempt < maxAttempts {
		return // the queue tries again
	}
	db := context.WithoutCancel(ctx)
	r, err := e.Store.Run(db, runID)
	if err != nil {
		e.log().Error("give up on run: read", "run_id", runID, "err", err, "cause", cause)
		return
	}
	switch r.State {
	case Queued, Running, Pausing, Cancelling:
	default:
		return // ended or paused: its hold is settled or kept on purpose
	}
	to, why := Failed, "interrupted: the run failed on every attempt"
	if r.CancelRequested || r.State == Cancelling {
		to, why = Cancelled, "cancelled"
	}
	e.log().Warn("run failed on its last attempt: settling it", "run_id", runID, "attempt", attempt, "cause", cause)
	if !e.reapOne(db, r, to, why) {
		e.log().Error("give up on run: settle failed; the reaper will end it", "run_id", runID)
	}
}

// execute runs a claimed run. It and the functions on the stack while a
// model call streams (stages, stage, callStage) keep small frames: runs are
// passed by pointer and everything that copies a Run or an Event is done in
// a function of its own, so that the goroutine of a run waiting on its model
// (most of a run's life) needs a small stack, not 32 KiB.
func (e *Engine) execute(ctx context.Context, runID string, attempt, maxAttempts int) error {
	x, err := e.start(ctx, runID, attempt, maxAttempts)
	if x == nil {
		return err
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer e.track(runID, cancel)()
	if x.r.Agent != nil {
		return e.executeAgentOf(ctx, runCtx, x)
	}
	return e.stages(ctx, runCtx, x)
}

// staged is a staged run being executed: the run as this worker last read
// or wrote it, its data, and what its stages need.
type staged struct {
	r                    Run
	plan                 Plan
	short                string // why the hold cannot pay for the rest (holdTooShort)
	attempt, maxAttempts int
	g                    gathered
	routes               []llm.Route
	writer               Writer
	budget               *runBudget
	missing              string // a whole-run stage that failed after others had written
}

// start moves a queued (or interrupted) run to running. It returns nil and
// the outcome when the run ends or pauses here instead.
//
//go:noinline
func (e *Engine) start(ctx context.Context, runID string, attempt, maxAttempts int) (*staged, error) {
	// The queue ends ctx on a cancel from another instance, a timeout or a
	// shutdown; the run's bookkeeping must still reach the store so that
	// every way out settles or pauses the run, never leaves it half-done.
	db := context.WithoutCancel(ctx)
	r, err := e.Store.Run(db, runID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil // nothing to do; a job without a run must not retry forever
	}
	if err != nil {
		return nil, err
	}
	switch r.State {
	case Succeeded, Partial, Failed, Cancelled, Expired, Paused:
		return nil, nil
	case Cancelling:
		return nil, e.finish(ctx, r.ID, Cancelled, "cancelled", nil, "")
	case Pausing:
		return nil, e.pauseOrGoOn(ctx, r.ID, attempt, maxAttempts)
	}
	plan := Plans[r.Request.Depth]
	// Read once: the hold's expiry is minutes to hours away, the data's
	// fetch below takes seconds.
	short := e.holdTooShort(db, r, plan)
	if short != "" && !wroteAny(r) {
		// Starting would spend what nobody can be charged for.
		return nil, e.finish(ctx, r.ID, Failed, short, nil, short+"; nothing was charged: ask for a new quote")
	}
	resumed := r.State == Running
	r, err = e.Store.UpdateRun(db, runID, "worker", "started", func(r *Run) error {
		if r.State != Queued && r.State != Running {
			return fmt.Errorf("%w: run is %s", ErrWrongState, r.State)
		}
		r.State = Running
		if r.StartedAt.IsZero() {
			r.StartedAt = e.now()
		}
		return nil
	})
	if errors.Is(err, ErrWrongState) {
		return nil, e.execute(ctx, runID, attempt, maxAttempts) // a cancel or pause landed meanwhile
	}
	if err != nil {
		return nil, err
	}
	note := "running"
	if resumed {
		note = fmt.Sprintf("resuming from stage %d after an interruption", r.Done+1)
	}
	e.publish(e.event(r, note))
	return &staged{r: r, plan: plan, short: short, attempt: attempt, maxAttempts: maxAttempts}, nil
}

//go:noinline
func (e *Engine) executeAgentOf(ctx, runCtx context.Context, x *staged) error {
	return e.executeAgent(ctx, runCtx, x.r, x.attempt, x.maxAttempts)
}

// stages fetches a staged run's data and runs its stages from the first
// not done, then delivers it.
func (e *Engine) stages(ctx, runCtx context.Context, x *staged) error {
	if end, err := e.prepare(ctx, runCtx, x); end {
		return err
	}
	// r.Missing set: an earlier attempt stopped at a failed stage (and then
	// the process died); the run ends partial as it would have.
	for i := x.r.Done; i < len(x.r.Stages) && x.r.Missing == ""; i++ {
		if end, err := e.stage(ctx, runCtx, x, i); end {
			return err
		}
	}
	return e.deliverStaged(ctx, x, x.r.Missing, "")
}

// prepare gathers the run's data (the chart drawn, the bars let go) and
// sets up its routes and budget; end is true when the run ended here.
//
//go:noinline
func (e *Engine) prepare(ctx, runCtx context.Context, x *staged) (end bool, err error) {
	db := context.WithoutCancel(ctx)
	r, runID := x.r, x.r.ID
	g := e.gatherRun(runCtx, r, x.plan)
	if runCtx.Err() != nil {
		// Cancelled (or shut down) while fetching: not a data failure.
		return true, e.interrupted(ctx, runCtx, r, nil, g, r.Done)
	}
	if len(g.failed) > 0 {
		r, err = e.Store.UpdateRun(db, runID, "worker", "market data", func(r *Run) error {
			if r.SymbolErrors == nil {
				r.SymbolErrors = map[string]string{}
			}
			maps.Copy(r.SymbolErrors, g.failed)
			return nil
		})
		if err != nil {
			return true, err
		}
	}
	x.r, x.g = r, g
	if len(g.ind) == 0 {
		return true, e.finish(ctx, runID, Failed, "no market data for any symbol", nil, "no market data: "+joinErrors(g.failed))
	}
	if x.short != "" {
		// Resumed with stages written but a hold that would lapse before
		// the rest could finish: deliver what was written.
		return true, e.deliver(ctx, r, g, x.plan, "remaining stages not run: "+x.short, x.short)
	}
	x.routes = e.routes(r)
	x.writer = e.writer(r.Offline)
	// The run as this worker last read or wrote it: while nothing else
	// writes it (a cancel, a pause, a redirect), each write below is one
	// statement based on this version (AdvanceRun), and the run is not read
	// again between stages. Any other write moves the version: the next
	// write is refused as stale and goes through UpdateRun, which reads the
	// run afresh, so the loop sees the cancel or pause at the next stage.
	x.budget = newRunBudget(r, func(exposure map[string]Tokens) error {
		p := x.r.Progress()
		p.Exposure = exposure
		err := e.Store.AdvanceRun(db, runID, x.r.Version, p, -1, "")
		if err == nil {
			x.r.Exposure, x.r.Version = exposure, x.r.Version+1
			return nil
		}
		if !errors.Is(err, ErrStale) {
			return err
		}
		fresh, err := e.Store.UpdateRun(db, runID, "worker", "reserve", func(r *Run) error {
			if r.CancelRequested {
				return fmt.Errorf("%w: cancel requested", ErrWrongState)
			}
			r.Exposure = exposure
			return nil
		})
		if err == nil {
			x.r = fresh
		}
		return err
	})
	return false, nil
}

// stage runs stage i; end is true when the run ended (or paused) there.
func (e *Engine) stage(ctx, runCtx context.Context, x *staged, i int) (end bool, err error) {
	db := context.WithoutCancel(ctx)
	r := &x.r
	runID := r.ID
	switch {
	case r.CancelRequested && r.wrote() && len(x.g.ind) > 0:
		return true, e.cancelStaged(ctx, x, i)
	case r.CancelRequested:
		return true, e.finish(ctx, runID, Cancelled, "cancelled", nil, "")
	case r.PauseRequested:
		return true, e.pauseOrGoOn(ctx, runID, x.attempt, x.maxAttempts)
	}
	st := &r.Stages[i]
	res := new(llm.Result)
	var text string
	var callErr error
	if st.Kind == StageLLM && !(st.Symbol != "" && x.g.failed[st.Symbol] != "") {
		maxOut, err := e.callStage(runCtx, x, i, res)
		e.recordStaged(db, x, res)
		callErr = err
		if err != nil {
			if runCtx.Err() != nil {
				return true, e.interruptedStaged(ctx, runCtx, x, &partialUsage{route: res.Route.ID, usage: res.Usage, maxOut: maxOut}, i)
			}
			// A failed call is a failed request: it costs nothing.
			switch {
			case errors.Is(err, llm.ErrOverBudget):
				// Not made: the run ends here with what was written.
				x.missing = stageNames(r.Stages[i:]) + ": not run: " + noRoomText(err)
				if !r.wrote() {
					return true, e.finish(ctx, runID, Failed, "call does not fit the hold", nil, x.missing)
				}
			case st.Symbol != "" && len(r.Symbols) > 1:
				x.g.failed[st.Symbol] = e.public(err, "", "run_id", runID, "stage", st.Name).Error() // partial: the other symbols go on
			case r.wrote():
				// What was written is delivered and charged; the run
				// ends partial, naming the part that is missing.
				x.missing = st.Name + ": " + e.public(err, "", "run_id", runID, "stage", st.Name).Error()
				if rest := stageNames(r.Stages[i+1:]); rest != "" {
					x.missing += "; not run after it: " + rest
				}
			default:
				return true, e.finish(ctx, runID, Failed, "model call failed", nil, "model call failed: "+e.public(err, "", "run_id", runID, "stage", st.Name).Error())
			}
		}
		text = CleanText(res.Text) // model output: no control or bidi character is stored or shown
	}
	exposure := x.budget.exposure()
	kind, symbol, name := st.Kind, st.Symbol, st.Name
	missing, failed := x.missing, x.g.failed
	done := func(r *Run) error {
		r.Done = i + 1
		if r.Outputs == nil {
			r.Outputs = map[int]string{}
		}
		r.Outputs[i] = text
		if res.Attempts > 0 && callErr == nil { // a failed call is not charged
			r.addUsage(res.Route.ID, res.Usage.PromptTokens, res.Usage.CompletionTokens)
			r.InSource = worseSource(r.InSource, res.Usage.PromptSource)
			r.OutSource = worseSource(r.OutSource, res.Usage.CompletionSource)
		}
		if kind == StageLLM {
			r.Exposure = exposure
		}
		if a := res.Anomaly; a != nil && callErr == nil {
			r.Anomalies = append(r.Anomalies, name+" on "+a.Route+": "+a.Err.Error())
		}
		if res.Attempts > 0 {
			r.Attempts += res.Attempts
			r.Failures += len(res.Failures)
		}
		if res.Attempts > 0 && callErr == nil && res.Route.ID != "" {
			// Other-bucket means other than the run's bucket, whatever
			// the catalog's order is now.
			r.CrossBucket = r.CrossBucket || r.bucketOf(res.Route.ID) != r.Bucket
			r.RouteID = res.Route.ID
		}
		r.Missing = missing // stored with the stage, so a resumed attempt ends partial too
		if symbol != "" && failed[symbol] != "" {
			if r.SymbolErrors == nil {
				r.SymbolErrors = map[string]string{}
			}
			r.SymbolErrors[symbol] = failed[symbol]
		}
		return nil
	}
	if err := e.advanceStaged(db, x, i, text, done); err != nil {
		return true, err
	}
	e.publishStaged(x)
	return false, nil
}

// callStage makes stage i's model call into res, and returns its output
// limit. Its prompt is built in a frame of its own (promptStaged): only
// the request is on the stack while the call streams.
func (e *Engine) callStage(runCtx context.Context, x *staged, i int, res *llm.Result) (int64, error) {
	req := new(llm.Request)
	e.promptStaged(x, i, req)
	req.Budget = x.budget
	return int64(req.MaxTokens), e.callInto(runCtx, &x.r, x.writer, x.routes, req, res)
}

//go:noinline
func (e *Engine) promptStaged(x *staged, i int, req *llm.Request) {
	*req = e.prompt(x.r, i, x.g.data, x.plan)
}

//go:noinline
func (e *Engine) recordStaged(ctx context.Context, x *staged, res *llm.Result) {
	e.recordFailures(ctx, x.r, *res)
}

//go:noinline
func (e *Engine) interruptedStaged(ctx, runCtx context.Context, x *staged, partial *partialUsage, i int) error {
	return e.interrupted(ctx, runCtx, x.r, partial, x.g, i)
}

//go:noinline
func (e *Engine) cancelStaged(ctx context.Context, x *staged, i int) error {
	return e.cancelWithReport(ctx, x.r, x.g, nil, i)
}

//go:noinline
func (e *Engine) deliverStaged(ctx context.Context, x *staged, missing, reason string) error {
	return e.deliver(ctx, x.r, x.g, x.plan, missing, reason)
}

//go:noinline
func (e *Engine) advanceStaged(ctx context.Context, x *staged, i int, text string, done func(*Run) error) error {
	r, err := e.advance(ctx, x.r, i, text, done)
	x.r = r
	return err
}

//go:noinline
func (e *Engine) publishStaged(x *staged) { e.publish(e.event(x.r, "")) }

// advance records stage i of r as done (with its text) by applying done:
// in one statement on the version of r this worker knows (AdvanceRun), or,
// when the run moved meanwhile, through UpdateRun on the run read afresh.
// It returns the run as stored.
func (e *Engine) advance(ctx context.Context, r Run, i int, text string, done func(*Run) error) (Run, error) {
	next := r.detached()
	if err := done(&next); err != nil {
		return r, err
	}
	stage := i
	if text == "" {
		stage = -1 // no text to keep: an empty output reads as none
	}
	err := e.Store.AdvanceRun(ctx, r.ID, r.Version, next.Progress(), stage, text)
	switch {
	case err == nil:
		next.Version = r.Version + 1
		return next, nil
	case errors.Is(err, ErrStale):
		return e.Store.UpdateRun(ctx, r.ID, "worker", "stage done", done)
	default:
		return r, err
	}
}

// deliver ends a run with the report of what it wrote: succeeded when
// nothing is missing, partial when a symbol or a stage is (missing names
// it), failed (and charged nothing) when no symbol could be covered. The
// finished stages' usage is charged; the stage in flight, if any, is not:
// its text is not delivered.
func (e *Engine) deliver(ctx context.Context, r Run, g gathered, plan Plan, missing, reason string) error {
	_, err := e.deliverAs(ctx, r, g, plan, missing, reason, "worker")
	return err
}

// deliverAs is deliver by actor; settled is false when the run had already
// ended elsewhere.
func (e *Engine) deliverAs(ctx context.Context, r Run, g gathered, plan Plan, missing, reason, actor string) (settled bool, err error) {
	report := e.report(r, g)
	report.Missing = missing
	var ok []string
	for _, s := range r.Symbols {
		if _, found := g.ind[s]; found && g.failed[s] == "" {
			ok = append(ok, s)
		}
	}
	// The chart was drawn when the data came, with every symbol that had
	// data: one whose model stage failed since stays in it (its figures are
	// sound; the report says what was not written).
	chart, err := g.chart.wait()
	if err != nil {
		e.log().Warn("chart failed", "run_id", r.ID, "err", err)
		chart = nil
	}
	to := Succeeded
	if len(r.SymbolErrors) > 0 || missing != "" {
		to = Partial
	}
	if len(ok) == 0 {
		to = Failed // charged nothing (settle)
	}
	final, err := e.settle(ctx, r.ID, to, actor, reason, nil, missing)
	if err != nil {
		if errors.Is(err, ErrWrongState) {
			return false, nil // settled elsewhere (a cancel won the race)
		}
		return false, err
	}
	ev := e.event(final, reason)
	ev.Report, ev.Chart = &report, chart
	e.publish(ev)
	return true, nil
}

// noRoomText says why a call was not made, for the user and the receipt.
func noRoomText(err error) string {
	var msg string
	if _, after, ok := strings.Cut(err.Error(), ErrNoRoom.Error()+": "); ok {
		msg = after
	}
	if msg == "" {
		return "its worst case does not fit in what is left of the hold"
	}
	return "its worst case does not fit in what is left of the hold (" + msg + ")"
}

// holdTooShort says why the run's hold cannot pay for the run any more: it
// lapsed, or it would lapse before the run's longest runtime is over. ""
// when it can.
func (e *Engine) holdTooShort(ctx context.Context, r Run, plan Plan) string {
	ids := []int64{r.HoldID, r.FallbackHoldID}
	for _, x := range r.Extensions {
		ids = append(ids, x.HoldID)
	}
	for _, id := range ids {
		if id == 0 {
			continue
		}
		h, err := e.Ledger.Hold(ctx, id)
		if err != nil {
			e.log().Warn("read hold", "run_id", r.ID, "hold_id", id, "err", err)
			continue // the settle will find out; not a reason to refuse
		}
		switch {
		case h.Status != billing.HoldOpen || !e.now().Before(h.ExpiresAt):
			return "not started: its hold has lapsed"
		case h.ExpiresAt.Before(e.now().Add(plan.RuntimeHigh)):
			return fmt.Sprintf("not started: its hold expires at %s UTC, before the run could finish", h.ExpiresAt.UTC().Format("15:04"))
		}
	}
	return ""
}

// prompt builds stage i's call from the data and the earlier stages' text.
// Earlier outputs are bounded (the quote counted each at the output limit),
// so no prompt grows past what the quote priced, whatever a route streamed.
func (e *Engine) prompt(r Run, i int, d promptData, plan Plan) llm.Request {
	st := r.Stages[i]
	budget := int64(0)
	var prior []string
	for j := 0; j < i && usesPrior(st); j++ {
		if out := r.Outputs[j]; out != "" && r.Stages[j].Kind == StageLLM {
			prior = append(prior, r.Stages[j].Name+": "+out)
			budget += int64(plan.OutputLimit)
		}
	}
	base := llm.CountPromptTokens(buildPrompt(st, d, plan.OutputLimit).Messages)
	limit := int64(plan.OutputLimit) * bytesPerToken
	for k := range prior {
		prior[k] = cutText(prior[k], limit)
	}
	for range 8 {
		d.Prior = prior
		req := buildPrompt(st, d, plan.OutputLimit)
		over := llm.CountPromptTokens(req.Messages) - base - budget
		if over <= 0 || len(prior) == 0 {
			return req
		}
		// JSON escaping made the sections longer than their text: cut the
		// longest one by the excess, with room for its escapes.
		longest := 0
		for k := range prior {
			if len(prior[k]) > len(prior[longest]) {
				longest = k
			}
		}
		prior[longest] = cutText(prior[longest], int64(len(prior[longest]))-over*bytesPerToken*2)
		prior = slices.Clone(prior)
	}
	d.Prior = nil // cannot happen with sane text; never send an oversized prompt
	return buildPrompt(st, d, plan.OutputLimit)
}

// usesPrior reports whether a stage writes from the earlier stages' text
// (the quote counts that text at the output limit per earlier call); the
// others write from the data alone.
func usesPrior(st Stage) bool {
	switch st.Role {
	case "synthesis", "bull", "bear", "risk":
		return true
	}
	return false
}

// bytesPerToken matches llm's local count: about four bytes a token.
const bytesPerToken = 4

// cutText returns the longest prefix of s of at most n bytes ending on a
// UTF-8 boundary.
func cutText(s string, n int64) string {
	if n <= 0 {
		return ""
	}
	if int64(len(s)) <= n {
		return s
	}
	i := int(n)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// stageNames lists stages' names, comma-separated.
func stageNames(stages []Stage) string {
	names := make([]string, len(stages))
	for i, st := range stages {
		names[i] = st.Name
	}
	return strings.Join(names, ", ")
}

// wroteAny reports whether an earlier model stage of r produced text.
func wroteAny(r Run) bool { return r.wrote() }

// wrote is wroteAny, without copying the run.
func (r *Run) wrote() bool {
	for i, st := range r.Stages {
		if st.Kind == StageLLM && r.Outputs[i] != "" {
			return true
		}
	}
	return false
}

// call streams one model call, publishing progress as tokens arrive. r is
// not changed while it streams.
func (e *Engine) call(ctx context.Context, r *Run, w Writer, routes []llm.Route, req llm.Request) (llm.Result, error) {
	var res llm.Result
	err := e.callInto(ctx, r, w, routes, &req, &res)
	return res, err
}

// intoWriter is a Writer that writes its result into the caller's (see
// llm.Client.StreamInto): less to keep on the stack while a call streams.
type intoWriter interface {
	StreamInto(ctx context.Context, routes []llm.Route, req *llm.Request, onDelta func(string, int64), res *llm.Result) error
}

// callInto is call, writing the result into res.
func (e *Engine) callInto(ctx context.Context, r *Run, w Writer, routes []llm.Route, req *llm.Request, res *llm.Result) error {
	p := &progress{e: e, r: r, every: cmp.Or(e.ProgressEvery, 250*time.Millisecond), prompt: llm.CountPromptTokens(req.Messages)}
	if len(routes) > 0 {
		p.route = routes[0].ID
	}
	req.OnQueue = p.queued
	if iw, ok := w.(intoWriter); ok {
		return iw.StreamInto(ctx, routes, req, p.delta, res)
	}
	return e.streamTo(ctx, w, routes, req, p, res)
}

//go:noinline
func (e *Engine) streamTo(ctx context.Context, w Writer, routes []llm.Route, req *llm.Request, p *progress, res *llm.Result) error {
	var err error
	*res, err = w.Stream(ctx, routes, *req, p.delta)
	return err
}

// progress publishes a streaming call's progress.
type progress struct {
	e      *Engine
	r      *Run
	every  time.Duration
	last   time.Time
	route  string
	prompt int64 // counted once, not per progress event
	shown  llm.Queue
}

func (p *progress) queued(q llm.Queue) {
	// The card says where the call is in line; it changes only when the
	// place or the wait (to the second) does.
	q.Wait = q.Wait.Round(time.Second)
	if q == p.shown {
		return
	}
	p.shown = q
	ev := p.e.event(*p.r, QueueNote(q))
	ev.Queued = &q
	p.e.publish(ev)
}

func (p *progress) delta(_ string, out int64) {
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.e.publishProgress(p.r, p.route, p.prompt, out)
	}
}

// publishProgress publishes a streaming stage's progress: r with the call's
// prompt and the output so far counted.
func (e *Engine) publishProgress(r *Run, route string, prompt, out int64) {
	snap := *r
	snap.ByRoute = maps.Clone(r.ByRoute)
	snap.addUsage(route, prompt, out)
	note := "writing"
	if e.pauseAsked(r.ID) {
		snap.State, snap.PauseRequested, note = Pausing, true, "pausing at the next stage"
	}
	e.publish(e.event(snap, note))
}

// QueueNote says where a call waiting for its route's capacity is in line:
// "queued: 37 ahead on this route, starts in about 40 s".
func QueueNote(q llm.Queue) string {
	when := "starts in about " + roundWait(q.Wait)
	if q.Wait <= 0 {
		when = "starts shortly"
	}
	return fmt.Sprintf("queued: %d ahead on this route, %s", q.Ahead, when)
}

// roundWait prints a wait in seconds under two minutes, else in minutes.
func roundWait(d time.Duration) string {
	if d < 2*time.Minute {
		return fmt.Sprintf("%d s", max(1, int(d.Round(time.Second)/time.Second)))
	}
	return fmt.Sprintf("%d min", int(d.Round(time.Minute)/time.Minute))
}

// recordFailures stores one failed-request record per failed attempt, and a
// usage-anomaly record when the provider's usage was not believed.
func (e *Engine) recordFailures(ctx context.Context, r Run, res llm.Result) {
	fails := res.Failures
	if res.Anomaly != nil {
		fails = append(slices.Clone(fails), *res.Anomaly)
	}
	for _, f := range fails {
		_, err := e.Ledger.RecordFailedRequest(context.WithoutCancel(ctx), billingFailure(r, f))
		if err != nil {
			e.log().Error("record failed request", "run_id", r.ID, "err", err)
		}
	}
}

// interrupted handles a model call (or the fetch) whose context ended at
// stage i: a cancel settles at once with the delivered tokens; a timeout
// delivers the stages written so far as a partial report, charging only
// those (or fails at $0 when none was written); a shutdown pauses the run.
func (e *Engine) interrupted(ctx, runCtx context.Context, r Run, partial *partialUsage, g gathered, i int) error {
	cur, err := e.Store.Run(context.WithoutCancel(ctx), r.ID)
	if err != nil {
		return err
	}
	cause := context.Cause(runCtx)
	switch {
	case errors.Is(cause, ErrLeaseLost):
		return ErrLeaseLost // taken over: the new holder settles it
	case cur.CancelRequested || errors.Is(cause, ErrCancelled):
		partial = e.asBilled(partial)
		if wroteAny(cur) && len(g.ind) > 0 {
			// What was written before the cancel is paid for: show it.
			return e.cancelWithReport(ctx, cur, g, partial, i)
		}
		return e.finish(ctx, r.ID, Cancelled, "cancelled mid-stream", partial, "")
	case errors.Is(cause, context.DeadlineExceeded):
		if wroteAny(cur) && len(g.ind) > 0 {
			missing := stageNames(cur.Stages[i:]) + ": not run: the run reached its time limit"
			return e.deliver(ctx, cur, g, Plans[cur.Request.Depth], missing, "timed out")
		}
		return e.finish(ctx, r.ID, Failed, "timed out", nil, "the run took longer than its depth allows; nothing was charged")
	default:
		// The server is shutting down (its grace period is over): the run
		// pauses, keeping its hold and its finished stages; Resume continues
		// it on any instance, and an unresumed pause expires and settles. The
		// interrupted stage's tokens are not charged: it will run again.
		return e.pauseFor(ctx, r.ID, "paused: the server restarted; press Resume to continue from the last finished stage")
	}
}

// finish settles and publishes the final event; a run already settled is fine.
func (e *Engine) finish(ctx context.Context, runID string, to State, reason string, extra *partialUsage, errText string) error {
	r, err := e.settle(ctx, runID, to, "worker", reason, extra, errText)
	if errors.Is(err, ErrWrongState) {
		return nil
	}
	if err != nil {
		return err
	}
	e.publish(e.event(r, reason))
	return nil
}

// cancelWithReport settles a cancelled run that had written parts, and
// publishes its final with the partial report (what was written, and the
// stages not run).
func (e *Engine) cancelWithReport(ctx context.Context, r Run, g gathered, partial *partialUsage, i int) error {
	report := e.report(r, g)
	report.Missing = stageNames(r.Stages[i:]) + ": not run: the run was cancelled"
	final, err := e.settle(ctx, r.ID, Cancelled, "worker", "cancelled mid-stream", partial, "")
	if errors.Is(err, ErrWrongState) {
		return nil
	}
	if err != nil {
		return err
	}
	ev := e.event(final, "cancelled mid-stream")
	ev.Report = &report
	e.publish(ev)
	return nil
}

// pauseOrGoOn pauses a run asked to pause; when the pause was withdrawn
// meanwhile (Resume before it took effect), the run goes on instead of
// being left live with no job to run it.
func (e *Engine) pauseOrGoOn(ctx context.Context, runID string, attempt, maxAttempts int) error {
	if err := e.pauseNow(ctx, runID); err != nil {
		return err
	}
	cur, err := e.Store.Run(context.WithoutCancel(ctx), runID)
	if err != nil {
		return err
	}
	if cur.State == Queued || cur.State == Running {
		return e.execute(ctx, runID, attempt, maxAttempts)
	}
	return nil
}

// pauseNow moves a run that was asked to pause into Paused.
func (e *Engine) pauseNow(ctx context.Context, runID string) error {
	return e.pauseFor(ctx, runID, "paused")
}

// pauseFor pauses a running or pausing run, saying why.
func (e *Engine) pauseFor(ctx context.Context, runID, why string) error {
	r, err := e.Store.UpdateRun(context.WithoutCancel(ctx), runID, "worker", why, func(r *Run) error {
		if r.State != Pausing && r.State != Running {
			return fmt.Errorf("%w: run is %s", ErrWrongState, r.State)
		}
		r.State, r.PausedAt = Paused, e.now()
		return nil
	})
	if errors.Is(err, ErrWrongState) {
		return nil
	}
	if err != nil {
		return err
	}
	e.publish(e.event(r, why))
	return nil
}

// gatherRun fetches a run's data; failures are per symbol.
func (e *Engine) gatherRun(ctx context.Context, r Run, plan Plan) gathered {
	g := gathered{symbols: r.Symbols, failed: map[string]string{}, ind: map[string]market.Indicators{}}
	series, errs := market.FetchAll(ctx, e.Market, r.Symbols, plan.Lookback)
	for s, err := range errs {
		g.failed[s] = e.public(err, s, "run_id", r.ID, "symbol", s).Error()
	}
	maps.Copy(g.failed, r.SymbolErrors)
	g.series = series
	for s, ser := range series {
		g.ind[s] = market.Compute(ser, plan.Window)
	}
	if r.Request.Kind == KindScan {
		// The model writes from the picks' signals as of now, and from why each was picked.
		g.notes = scanPromptNotes(series, g.ind, r.Symbols, r.Scan)
	}
	e.addContext(ctx, &g, plan)
	g.data = e.promptData(g, plan)
	// The chart now, in the background, from the bars at hand; then the
	// bars go (the prompt and the report need only the figures): a run does
	// not keep its market data alive through its model calls.
	var ok []market.Series
	for _, s := range r.Symbols {
		if ser, found := series[s]; found && g.failed[s] == "" {
			ok = append(ok, ser)
		}
	}
	if len(ok) > 0 && ctx.Err() == nil {
		g.chart = e.drawChart(r.ID, ok, plan)
	}
	g.series = nil
	return g
}

// drawChart draws a run's chart in the background (the run goes on to its
// model calls meanwhile; the chart is waited for at delivery).
func (e *Engine) drawChart(runID string, series []market.Series, plan Plan) *pendingChart {
	p := &pendingChart{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer func() {
			if v := recover(); v != nil {
				e.log().Error("chart panicked", "run_id", runID, "panic", v)
				p.png, p.err = nil, errors.New("chart: drawing failed")
			}
		}()
		p.png, p.err = e.charts.Chart(series, market.ChartOptions{Window: plan.Window})
	}()
	return p
}

// routes resolves a run's fallback chain against the current catalog.
func (e *Engine) routes(r Run) []llm.Route {
	var out []llm.Route
	for _, id := range r.Chain {
		if rt := e.Catalog.Route(id); rt != nil && rt.Enabled {
			out = append(out, *rt)
		}
	}
	return out
}

// report assembles the structured report from the finished stages.
func (e *Engine) report(r Run, g gathered) Report {
	rep := Report{
		Title: titleFor(r), DataSource: e.Market.Name(), Synthetic: r.Synthetic, RuleBased: r.Offline,
		Model: r.Model, Notice: Notice, Scan: r.Scan, CSV: r.Request.CSV && len(r.Scan) > 0,
	}
	if len(r.SymbolErrors) > 0 {
		rep.Failed = maps.Clone(r.SymbolErrors)
	}
	for _, s := range r.Symbols {
		ind, ok := g.ind[s]
		if !ok || r.SymbolErrors[s] != "" {
			continue
		}
		if ind.AsOf.After(rep.AsOf) {
			rep.AsOf = ind.AsOf
		}
		sec := Section{Symbol: s, AsOf: ind.AsOf, Context: contextLine(ind), Warnings: warningsOf(ind, e.now()), Figures: figures(ind, g.cx[s])}
		for i, st := range r.Stages {
			if st.Symbol == s {
				sec.Text = r.Outputs[i]
			}
		}
		rep.Sections = append(rep.Sections, sec)
	}
	for i, st := range r.Stages {
		switch st.Role {
		case "report":
			rep.Overview = r.Outputs[i]
		case "synthesis":
			rep.Synthesis = r.Outputs[i]
		case "bull":
			rep.Bull = r.Outputs[i]
		case "bear":
			rep.Bear = r.Outputs[i]
		case "risk":
			rep.Risks = r.Outputs[i]
		}
	}
	if !rep.RuleBased {
		// A model may write a number the data does not hold; the reader is told under the text.
		data, _ := json.Marshal(g.data)
		for _, text := range []*string{&rep.Overview, &rep.Synthesis, &rep.Bull, &rep.Bear, &rep.Risks} {
			*text = grounded(*text, string(data))
		}
		for i := range rep.Sections {
			rep.Sections[i].Text = grounded(rep.Sections[i].Text, string(data))
		}
	}
	return rep
}

// grounded appends the grounding check's note to a model-written text whose figures are not all in data.
func grounded(text, data string) string {
	if strings.TrimSpace(text) == "" {
		return text
	}
	if note := CheckGrounding(text, data).Note(); note != "" {
		return text + "\n\n" + note
	}
	return text
}

func titleFor(r Run) string {
	switch {
	case r.Request.Kind == KindAsk:
		return "Ask: " + clipRunes(r.Request.Question, 100)
	case r.Request.Kind == KindScan && r.Agent != nil:
		return "Agent scan of " + r.Request.Watchlist
	case r.Agent != nil:
		return "Agent research: " + strings.Join(r.Symbols, ", ")
	case r.Request.Kind == KindScan:
		return fmt.Sprintf("Scan of %s: %s", r.Request.Watchlist, strings.Join(r.Symbols, ", "))
	}
	return "Research: " + strings.Join(r.Symbols, ", ")
}

func joinErrors(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + m[k]
	}
	return strings.Join(parts, "; ")
}
