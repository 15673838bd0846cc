package research_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// soloPrice is the one route's price in these tests: $1 in / $4 out per 1M.
var soloPrice = billing.Price{InputPerM: billing.Micro, OutputPerM: 4 * billing.Micro}

// soloRoutes is a single official route on the fake API, so the hold is
// priced at exactly the route that runs.
func soloRoutes(url string) []llm.Route {
	return []llm.Route{{ID: "solo", Kind: billing.RouteOfficial, Model: "gpt-solo", BaseURL: url, APIKey: "sk-test-solo0000",
		Price: soloPrice, MaxContext: 128_000, Enabled: true}}
}

func soloBed(t testing.TB, pg, workers bool) *testbed.Bed {
	return testbed.New(t, testbed.Options{Postgres: pg, RoutesFor: soloRoutes, NoWorkers: !workers})
}

func soloQuote(t *testing.T, b *testbed.Bed, depth research.Depth, symbols ...string) research.Quote {
	return quote(t, b, research.Request{Symbols: symbols, Depth: depth, Model: "gpt-solo"})
}

// checkEnd asserts what every ending must keep: captured within the hold,
// exactly one terminal transition, and a clean, settled ledger.
func checkEnd(t *testing.T, b *testbed.Bed, r research.Run) {
	t.Helper()
	if r.Captured < 0 || r.Captured > r.Cap() || r.FallbackCaptured > r.FallbackHold {
		t.Errorf("captured %s of a %s hold (fallback %s of %s)", r.Captured, r.Hold, r.FallbackCaptured, r.FallbackHold)
	}
	trs, err := b.Store.Transitions(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	terminal := 0
	for _, tr := range trs {
		if tr.To.Terminal() {
			terminal++
		}
	}
	if terminal != 1 {
		t.Errorf("%d terminal transitions: %+v", terminal, trs)
	}
	b.CheckSettled()
}

// TestEndlessRouteIsCapped: a route that ignores max_tokens and never stops
// is closed at the output limit; the run succeeds with the text that came,
// cut to the limit, charged at the local count, within the hold.
func TestEndlessRouteIsCapped(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := soloBed(t, pg, true)
		b.LLM.SetDefault(llmtest.Endless("tokens ", "without ", "end "))
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		run := confirm(t, b, soloQuote(t, b, research.Standard, "AAPL", "NVDA"))
		final := b.Events.WaitFinal(t, run.ID, wait)
		r := final.Run
		limit := research.Plans[research.Standard].OutputLimit
		if r.State != research.Succeeded || final.Report == nil || final.Report.Synthesis == "" {
			t.Fatalf("run ended %s (%s)", r.State, r.Error)
		}
		for i, out := range r.Outputs {
			if len(out) > limit*4 {
				t.Fatalf("stage %d kept %d bytes, past the %d-token limit", i, len(out), limit)
			}
		}
		// Every prompt stayed within the quote's size: the synthesis saw the
		// analyses only as bounded text.
		for _, req := range b.LLM.Requests() {
			n := 0
			for _, m := range req.Messages {
				n += len(m.Content)
			}
			if n > 64_000 {
				t.Fatalf("a prompt of %d bytes", n)
			}
		}
		if r.TokensOut > int64(3*limit) || r.OutSource != billing.UsageLocal {
			t.Fatalf("charged %d output tokens (%s) for 3 calls of %d", r.TokensOut, r.OutSource, limit)
		}
		if r.Captured != soloPrice.Cost(r.TokensIn, r.TokensOut) {
			t.Fatalf("captured %s, want %s", r.Captured, soloPrice.Cost(r.TokensIn, r.TokensOut))
		}
		checkEnd(t, b, r)
	})
}

// TestAbsurdAndNegativeUsage: a route reporting 3e18 or negative tokens is
// charged the local count, with both figures on the receipt and a
// usage-anomaly record; nothing panics, the run ends and the ledger is clean.
func TestAbsurdAndNegativeUsage(t *testing.T) {
	t.Parallel()
	for name, usage := range map[string][2]int{"absurd": {1000, 3e18}, "negative": {-1000, -50}, "huge prompt": {4e18, 10}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			both(t, func(t *testing.T, pg bool) {
				b := soloBed(t, pg, true)
				b.LLM.Enqueue(llmtest.Stream("AAPL ", "looks ", "firm.").WithUsage(usage[0], usage[1]))
				b.Fund(alice, billing.BucketCredit, billing.Micro)
				run := confirm(t, b, soloQuote(t, b, research.Quick, "AAPL"))
				final := b.Events.WaitFinal(t, run.ID, wait)
				r := final.Run
				if r.State != research.Succeeded || final.Report == nil {
					t.Fatalf("run ended %s (%s)", r.State, r.Error)
				}
				if r.TokensOut != llm.CountTokens("AAPL looks firm.") || r.TokensIn <= 0 || r.OutSource != billing.UsageLocal {
					t.Fatalf("charged %d in / %d out (%s), want the local count", r.TokensIn, r.TokensOut, r.OutSource)
				}
				rc, err := b.Store.Receipt(t.Context(), r.ReceiptID)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(rc.Notes, "not believed") || !strings.Contains(rc.Notes, "local count") {
					t.Fatalf("receipt notes %q do not keep both figures", rc.Notes)
				}
				fails, err := b.Store.FailedRequests(t.Context(), run.ID)
				if err != nil || len(fails) != 1 || fails[0].ErrorClass != string(llm.ClassUsageAnomaly) || fails[0].Charged != 0 {
					t.Fatalf("failed requests = %+v, %v", fails, err)
				}
				if st := b.Engine.Health.Stats("solo"); st.ConsecutiveFailures != 1 {
					t.Fatalf("route health = %+v, want the anomaly counted", st)
				}
				checkEnd(t, b, r)
			})
		})
	}
}

// TestSlowStreamPastDeadline: the job's deadline lands while a slow route
// streams. With a stage already written the run ends partial, delivering
// and charging that stage only; with none it fails at $0.
func TestSlowStreamPastDeadline(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := soloBed(t, pg, false)
		b.Fund(alice, billing.BucketCredit, billing.Micro)

		// Written: AAPL's analysis comes at once, NVDA's streams slowly.
		run := confirm(t, b, soloQuote(t, b, research.Standard, "AAPL", "NVDA"))
		b.LLM.Enqueue(llmtest.Stream("AAPL is firm.").WithUsage(900, 5), llmtest.Endless("slow ").WithDelay(20*time.Millisecond))
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		if err := b.Engine.Execute(ctx, run.ID, 1, 3); err != nil {
			t.Fatal(err)
		}
		final := b.Events.WaitFinal(t, run.ID, wait)
		r := final.Run
		if r.State != research.Partial || final.Report == nil || !strings.Contains(final.Report.Sections[0].Text, "AAPL is firm.") ||
			!strings.Contains(final.Report.Missing, "time limit") {
			t.Fatalf("run %s (%q), report %+v", r.State, r.Error, final.Report)
		}
		if want := soloPrice.Cost(900, 5); r.Captured != want {
			t.Fatalf("captured %s, want %s: the written stage only", r.Captured, want)
		}
		checkEnd(t, b, r)

		// Nothing written: $0, and the message says why.
		run = confirm(t, b, soloQuote(t, b, research.Quick, "AAPL"))
		b.LLM.Enqueue(llmtest.Endless("slow ").WithDelay(20 * time.Millisecond))
		ctx2, cancel2 := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel2()
		if err := b.Engine.Execute(ctx2, run.ID, 1, 3); err != nil {
			t.Fatal(err)
		}
		r = b.Events.WaitFinal(t, run.ID, wait).Run
		if r.State != research.Failed || r.Captured != 0 || !strings.Contains(r.Error, "nothing was charged") {
			t.Fatalf("run %s captured %s: %q", r.State, r.Captured, r.Error)
		}
		checkEnd(t, b, r)
	})
}

// TestCallThatDoesNotFitIsNotMade: before every call the engine reserves its
// worst case against what is left of the hold. With no room for the first
// call nothing is sent and the run fails at $0; with room for the analyses
// only, the synthesis is not made and the run ends partial, saying why.
func TestCallThatDoesNotFitIsNotMade(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := soloBed(t, pg, false)
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		run := confirm(t, b, soloQuote(t, b, research.Quick, "AAPL"))
		if _, err := b.Store.UpdateRun(t.Context(), run.ID, "test", "used elsewhere", func(r *research.Run) error {
			r.Exposure = map[string]research.Tokens{"solo": {In: 10_000_000}}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := b.Engine.Execute(t.Context(), run.ID, 1, 3); err != nil {
			t.Fatal(err)
		}
		r := b.Events.WaitFinal(t, run.ID, wait).Run
		if r.State != research.Failed || r.Captured != 0 || len(b.LLM.Requests()) != 0 || !strings.Contains(r.Error, "does not fit") {
			t.Fatalf("run %s captured %s after %d requests: %q", r.State, r.Captured, len(b.LLM.Requests()), r.Error)
		}
		checkEnd(t, b, r)

		// The analyses report the most usage believed, which leaves no room
		// for the synthesis.
		q := soloQuote(t, b, research.Standard, "AAPL", "NVDA")
		run = confirm(t, b, q)
		b.LLM.Enqueue(llmtest.Stream("AAPL is firm.").WithUsage(int(q.TokensIn/2), 700), llmtest.Stream("NVDA is hot.").WithUsage(int(q.TokensIn/2), 700))
		if err := b.Engine.Execute(t.Context(), run.ID, 1, 3); err != nil {
			t.Fatal(err)
		}
		final := b.Events.WaitFinal(t, run.ID, wait)
		r = final.Run
		if r.State != research.Partial || final.Report == nil || len(final.Report.Sections) != 2 || final.Report.Synthesis != "" ||
			!strings.Contains(final.Report.Missing, "synthesis: not run") || len(b.LLM.Requests()) != 2 {
			t.Fatalf("run %s (%q) after %d requests, report %+v", r.State, r.Error, len(b.LLM.Requests()), final.Report)
		}
		rc, err := b.Store.Receipt(t.Context(), r.ReceiptID)
		if err != nil || !strings.Contains(rc.Notes, "does not fit") || rc.Captured != r.Captured || r.Captured > r.Hold {
			t.Fatalf("receipt %+v, %v", rc, err)
		}
		checkEnd(t, b, r)
	})
}

// TestReaperEndingsAreFair: a run paused by a shutdown and then expired, and
// a run the reaper fails as stale, deliver their written stages in a partial
// report and are charged for those only; with nothing written they cost $0.
func TestReaperEndingsAreFair(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := soloBed(t, pg, false)
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		written := func(r *research.Run) {
			r.Done, r.Outputs = 3, map[int]string{2: "AAPL: written before the stop."}
			r.ByRoute = map[string]research.Tokens{"solo": {In: 800, Out: 40}}
			r.TokensIn, r.TokensOut = 800, 40
			r.StartedAt = time.Now()
		}
		paused := confirm(t, b, soloQuote(t, b, research.Standard, "AAPL", "NVDA"))
		stale := confirm(t, b, soloQuote(t, b, research.Standard, "AAPL", "NVDA"))
		empty := confirm(t, b, soloQuote(t, b, research.Quick, "MSFT"))
		emptyPaused := confirm(t, b, soloQuote(t, b, research.Quick, "MSFT"))
		for id, st := range map[string]research.State{paused.ID: research.Paused, stale.ID: research.Running, empty.ID: research.Running, emptyPaused.ID: research.Paused} {
			if _, err := b.Store.UpdateRun(t.Context(), id, "test", "as a stopped worker left it", func(r *research.Run) error {
				r.State = st
				if id == paused.ID || id == stale.ID {
					written(r)
				} else {
					r.ByRoute = map[string]research.Tokens{"solo": {In: 800, Out: 40}} // used, nothing delivered
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		b.Clock.Advance(61 * time.Minute) // past the pause TTL and the stale bound, within the holds' lifetime
		if n, err := b.Engine.Reap(t.Context(), time.Hour); err != nil || n != 4 {
			t.Fatalf("reaped %d, %v", n, err)
		}
		for _, id := range []string{paused.ID, stale.ID} {
			final := b.Events.WaitFinal(t, id, wait)
			r := final.Run
			if r.State != research.Partial || final.Report == nil || !strings.Contains(final.Report.Sections[0].Text, "written before the stop") ||
				r.Captured != soloPrice.Cost(800, 40) || !strings.Contains(final.Report.Missing, "not run") {
				t.Fatalf("reaped run %s captured %s, report %+v", r.State, r.Captured, final.Report)
			}
			checkEnd(t, b, r)
		}
		for id, want := range map[string]research.State{empty.ID: research.Failed, emptyPaused.ID: research.Expired} {
			r := b.Events.WaitFinal(t, id, wait).Run
			if r.State != want || r.Captured != 0 {
				t.Fatalf("run with nothing written ended %s, captured %s; want %s at $0", r.State, r.Captured, want)
			}
			checkEnd(t, b, r)
		}
	})
}

// TestLapsedHoldDoesNotStart: a queued run whose hold lapsed, or would lapse
// before the run's longest runtime, is not started: $0, a clear message, no
// model call.
func TestLapsedHoldDoesNotStart(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := soloBed(t, pg, false)
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		lapsed := confirm(t, b, soloQuote(t, b, research.Quick, "AAPL"))
		short := confirm(t, b, soloQuote(t, b, research.Quick, "MSFT"))
		h, err := b.Store.Hold(t.Context(), short.HoldID)
		if err != nil {
			t.Fatal(err)
		}
		// One minute left on short's hold: less than a quick run may take.
		b.Clock.Advance(time.Until(h.ExpiresAt) - time.Minute)
		if err := b.Engine.Execute(t.Context(), short.ID, 1, 3); err != nil {
			t.Fatal(err)
		}
		r := b.Events.WaitFinal(t, short.ID, wait).Run
		if r.State != research.Failed || r.Captured != 0 || !strings.Contains(r.Error, "before the run could finish") || !r.StartedAt.IsZero() {
			t.Fatalf("short hold: run %s captured %s: %q", r.State, r.Captured, r.Error)
		}
		b.Clock.Advance(2 * time.Minute)
		if err := b.Engine.Execute(t.Context(), lapsed.ID, 1, 3); err != nil {
			t.Fatal(err)
		}
		r = b.Events.WaitFinal(t, lapsed.ID, wait).Run
		if r.State != research.Failed || r.Captured != 0 || !strings.Contains(r.Error, "lapsed") || !strings.Contains(r.Error, "new quote") {
			t.Fatalf("lapsed hold: run %s captured %s: %q", r.State, r.Captured, r.Error)
		}
		if n := len(b.LLM.Requests()); n != 0 {
			t.Fatalf("%d model calls for runs that could not be paid", n)
		}
		checkEnd(t, b, r)
	})
}

// TestCancelPausedBeforeStart: a queued run paused before it ever started
// settles at once on Cancel, at $0, and its job never runs it.
func TestCancelPausedBeforeStart(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := soloBed(t, pg, false)
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		run := confirm(t, b, soloQuote(t, b, research.Quick, "AAPL"))
		if r, err := b.Engine.Pause(t.Context(), run.ID, alice); err != nil || r.State != research.Pausing {
			t.Fatalf("pause: %s, %v", r.State, err)
		}
		r, err := b.Engine.Cancel(t.Context(), run.ID, alice)
		if err != nil || r.State != research.Cancelled || r.Captured != 0 {
			t.Fatalf("cancel of a pausing, never started run: %s captured %s, %v", r.State, r.Captured, err)
		}
		if err := b.Engine.Execute(t.Context(), run.ID, 1, 3); err != nil {
			t.Fatal(err)
		}
		if cur, _ := b.Store.Run(t.Context(), run.ID); cur.State != research.Cancelled || len(b.LLM.Requests()) != 0 {
			t.Fatalf("after its job ran: %s, %d requests", cur.State, len(b.LLM.Requests()))
		}
		checkEnd(t, b, r)
	})
}

// panicWriter panics on every call, as a bug in a writer would.
type panicWriter struct{}

func (panicWriter) Stream(context.Context, []llm.Route, llm.Request, func(string, int64)) (llm.Result, error) {
	panic("writer bug")
}

// TestPanicsAreRecovered: a panic while executing a run is recovered and
// returned as an error with a reference; the reaper later ends the run
// fairly, and its own panics are recovered per run.
func TestPanicsAreRecovered(t *testing.T) {
	t.Parallel()
	b := soloBed(t, false, false)
	b.Engine.LLM = panicWriter{}
	b.Fund(alice, billing.BucketCredit, billing.Micro)
	run := confirm(t, b, soloQuote(t, b, research.Quick, "AAPL"))
	err := b.Engine.Execute(t.Context(), run.ID, 1, 3)
	if err == nil || !strings.Contains(err.Error(), "ref ") || strings.Contains(err.Error(), "writer bug") {
		t.Fatalf("execute = %v, want an internal error with a reference", err)
	}
	b.Engine.Sink = panicSink{}
	b.Clock.Advance(2 * time.Hour)
	if _, err := b.Engine.Reap(t.Context(), time.Hour); err != nil {
		t.Fatal(err)
	}
	r, err := b.Store.Run(t.Context(), run.ID)
	if err != nil || r.State != research.Failed || r.Captured != 0 {
		t.Fatalf("reaped after a panic: %s captured %s, %v", r.State, r.Captured, err)
	}
	checkEnd(t, b, r)
	if _, err := b.Engine.Cancel(t.Context(), run.ID, alice); !errors.Is(err, research.ErrWrongState) {
		t.Fatalf("cancel of an ended run = %v", err)
	}
}

type panicSink struct{}

func (panicSink) Publish(research.Event) { panic("sink bug") }

// TestQuoteSaysWhatTheCapDoes: the quote's text is true to what the engine
// does at the cap and on a timeout, and that the hold bounds the cost.
func TestQuoteSaysWhatTheCapDoes(t *testing.T) {
	t.Parallel()
	b := soloBed(t, false, false)
	b.Fund(alice, billing.BucketCredit, billing.Micro)
	q := soloQuote(t, b, research.Quick, "AAPL")
	for _, want := range []string{"most this run can cost", "900 tokens", "not made", "partial", "nothing if nothing was written"} {
		if !strings.Contains(q.CapPolicy, want) {
			t.Errorf("cap policy %q does not say %q", q.CapPolicy, want)
		}
	}
	for _, want := range []string{"2 min", "partial report", "costs nothing"} {
		if !strings.Contains(q.TimeoutPolicy, want) {
			t.Errorf("timeout policy %q does not say %q", q.TimeoutPolicy, want)
		}
	}
	if q.FailedCost != 0 {
		t.Errorf("a failed request costs %s", q.FailedCost)
	}
}

// failingWrites is a store whose stage writes fail after the first ok
// stages' text was written, as a database that went away mid-run would fail
// them.
type failingWrites struct {
	research.Store
	ok atomic.Int64
}

func (s *failingWrites) AdvanceRun(ctx context.Context, id string, version int64, p research.Progress, stage int, output string) error {
	if stage >= 0 && s.ok.Add(-1) < 0 {
		return errors.New("write stage: connection reset by peer")
	}
	return s.Store.AdvanceRun(ctx, id, version, p, stage, output)
}

// TestLastAttemptSettlesTheRun: a run whose job fails on its last attempt
// (the queue discards the job after it) is settled by that attempt, not left
// holding its money until the reaper's hour: with nothing written it fails
// at $0; with a stage written it ends partial, charging that stage only. An
// earlier attempt's failure leaves the run for the queue's retry.
func TestLastAttemptSettlesTheRun(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := soloBed(t, pg, false)
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		writer := b.Engine.LLM
		b.Engine.LLM = panicWriter{}
		run := confirm(t, b, soloQuote(t, b, research.Quick, "AAPL"))
		if err := b.Engine.Execute(t.Context(), run.ID, 1, 3); err == nil {
			t.Fatal("execute with a broken writer succeeded")
		}
		if cur, _ := b.Store.Run(t.Context(), run.ID); cur.State.Terminal() {
			t.Fatalf("the first of three attempts ended the run: %s", cur.State)
		}
		if err := b.Engine.Execute(t.Context(), run.ID, 3, 3); err == nil {
			t.Fatal("execute with a broken writer succeeded")
		}
		r, err := b.Store.Run(t.Context(), run.ID)
		if err != nil || r.State != research.Failed || r.Captured != 0 {
			t.Fatalf("after the last attempt: %s captured %s, %v", r.State, r.Captured, err)
		}
		checkEnd(t, b, r)

		// A stage written, then the store fails: partial, that stage paid.
		b.Engine.LLM = writer
		store := &failingWrites{Store: b.Engine.Store}
		store.ok.Store(1)
		b.Engine.Store = store
		run = confirm(t, b, soloQuote(t, b, research.Standard, "AAPL", "NVDA"))
		b.LLM.Enqueue(llmtest.Stream("AAPL is firm.").WithUsage(900, 5), llmtest.Stream("NVDA is hot.").WithUsage(900, 5))
		if err := b.Engine.Execute(t.Context(), run.ID, 3, 3); err == nil {
			t.Fatal("execute with failing writes succeeded")
		}
		final := b.Events.WaitFinal(t, run.ID, wait)
		r = final.Run
		if r.State != research.Partial || final.Report == nil || !strings.Contains(final.Report.Sections[0].Text, "AAPL is firm.") {
			t.Fatalf("run %s (%q), report %+v", r.State, r.Error, final.Report)
		}
		if want := soloPrice.Cost(900, 5); r.Captured != want {
			t.Fatalf("captured %s, want %s: the written stage only", r.Captured, want)
		}
		checkEnd(t, b, r)
	})
}
