package research_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// askingBed is a bed whose model calls tools forever at a cost that meets
// a $0.04 cap within a few steps, and answers when tools are not allowed.
func askingBed(t *testing.T, pg bool) *testbed.Bed {
	b := soloBed(t, pg, true)
	b.Fund(alice, billing.BucketCredit, billing.Micro)
	b.LLM.SetDefault(llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL"}`)).WithUsage(4000, 500))
	answerWhenNoTools(b, "Here is what I found on AAPL.")
	return b
}

const smallCap = billing.Micro * 4 / 100

// waitAsk waits for the run to pause on its n-th question.
func waitAsk(t *testing.T, b *testbed.Bed, runID string, n int) research.Run {
	t.Helper()
	return b.Events.Wait(t, runID, wait, func(ev research.Event) bool {
		r := ev.Run
		return r.State == research.Paused && r.Agent != nil && r.Agent.Ask != nil && len(r.Agent.Asks) == n-1
	}).Run
}

// TestAgentAskContinue: at the threshold the run pauses and asks; a
// stranger's press is refused; Continue places the additional hold (a
// ledger hold of its own, in the same bucket) and the run goes on to its
// answer, spending into the extension. Captured stays within the cap and
// the extension; the receipt lists every step; the ledger is clean and
// every hold settled.
func TestAgentAskContinue(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := askingBed(t, pg)
		q := askQuote(t, b, "Dig into AAPL", smallCap, false)
		if q.Agent.AskAt != research.DefaultAskAt || q.Agent.Extra <= 0 || !strings.Contains(q.AskPolicy, "Continue +") {
			t.Fatalf("quote ask = %+v (%s)", q.Agent, q.AskPolicy)
		}
		run := confirm(t, b, q)
		r := waitAsk(t, b, run.ID, 1)
		ask := *r.Agent.Ask
		if ask.Extra != q.Agent.Extra || ask.Cap != smallCap || ask.Spent <= 0 || !ask.Deadline.After(ask.At) {
			t.Fatalf("ask = %+v", ask)
		}
		calls := len(b.LLM.Requests())
		if _, err := b.Engine.Continue(t.Context(), run.ID, bob); !errors.Is(err, research.ErrForbidden) {
			t.Fatalf("a stranger's Continue = %v", err)
		}
		if _, err := b.Engine.WrapUp(t.Context(), run.ID, bob); !errors.Is(err, research.ErrForbidden) {
			t.Fatalf("a stranger's Wrap up = %v", err)
		}
		if _, err := b.Engine.Resume(t.Context(), run.ID, alice); !errors.Is(err, research.ErrWrongState) {
			t.Fatalf("Resume of an asking run = %v", err)
		}
		if len(b.LLM.Requests()) != calls {
			t.Fatal("the run went on while it was asking")
		}
		r, err := b.Engine.Continue(t.Context(), run.ID, alice)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Extensions) != 1 || r.Extensions[0].Amount != ask.Extra || r.Cap() != smallCap+ask.Extra {
			t.Fatalf("extensions = %+v, cap %s", r.Extensions, r.Cap())
		}
		h, err := b.Store.Hold(t.Context(), r.Extensions[0].HoldID)
		if err != nil || h.Amount != ask.Extra || h.Bucket != billing.BucketCredit || h.Status != billing.HoldOpen || h.ID == r.HoldID {
			t.Fatalf("extension hold = %+v, %v", h, err)
		}
		if _, err := b.Engine.Continue(t.Context(), run.ID, alice); !errors.Is(err, research.ErrWrongState) {
			t.Fatalf("a second Continue = %v", err)
		}
		// The extension covers the rest of the step limit: no second question.
		final := b.Events.WaitFinal(t, run.ID, wait)
		r = final.Run
		reqs := b.LLM.Requests()
		if r.State != research.Succeeded || !strings.Contains(final.Report.Overview, "what I found") || len(reqs) != research.DefaultAgentPlan.MaxSteps {
			t.Fatalf("ended %s (%s) after %d calls", r.State, r.Error, len(reqs))
		}
		if r.Captured <= smallCap {
			t.Fatalf("captured %s: the extension was never spent", r.Captured)
		}
		rc, err := b.Store.Receipt(t.Context(), r.ReceiptID)
		if err != nil || rc.Held != smallCap+ask.Extra || rc.Captured != r.Captured || rc.Captured+rc.Released != rc.Held ||
			len(rc.Steps) != len(r.Agent.Steps) || !strings.Contains(rc.Notes, "extended by") {
			t.Fatalf("receipt = %+v, %v", rc, err)
		}
		if len(r.Agent.Asks) != 1 || r.Agent.Asks[0].Answer != research.AnswerContinue || r.Agent.Asks[0].By != alice.String() {
			t.Fatalf("answers = %+v", r.Agent.Asks)
		}
		checkAgentEnd(t, b, r)
	})
}

// TestAgentAskWrapUp: Wrap up now makes the run answer from what it has,
// within the cap.
func TestAgentAskWrapUp(t *testing.T) {
	t.Parallel()
	b := askingBed(t, false)
	run := confirm(t, b, askQuote(t, b, "Dig into AAPL", smallCap, false))
	waitAsk(t, b, run.ID, 1)
	calls := len(b.LLM.Requests())
	if _, err := b.Engine.WrapUp(t.Context(), run.ID, alice); err != nil {
		t.Fatal(err)
	}
	final := b.Events.WaitFinal(t, run.ID, wait)
	r := final.Run
	reqs := b.LLM.Requests()
	if r.State != research.Succeeded || len(reqs) != calls+1 || reqs[calls].ToolChoice != "none" || !strings.Contains(final.Report.Overview, "what I found") {
		t.Fatalf("ended %s after %d calls (asked after %d)", r.State, len(reqs), calls)
	}
	if len(r.Agent.Asks) != 1 || r.Agent.Asks[0].Answer != research.AnswerWrapUp || r.Captured > smallCap {
		t.Fatalf("asks %+v, captured %s", r.Agent.Asks, r.Captured)
	}
	checkAgentEnd(t, b, r)
}

// TestAgentAskUnanswered: no answer by the deadline wraps the run up.
func TestAgentAskUnanswered(t *testing.T) {
	t.Parallel()
	b := askingBed(t, false)
	run := confirm(t, b, askQuote(t, b, "Dig into AAPL", smallCap, false))
	waitAsk(t, b, run.ID, 1)
	if n, err := b.Engine.Reap(t.Context(), time.Hour); err != nil || n != 0 {
		t.Fatalf("reaped %d before the deadline (%v)", n, err)
	}
	b.Clock.Advance(research.DefaultAskTimeout + time.Second)
	if n, err := b.Engine.Reap(t.Context(), time.Hour); err != nil || n != 1 {
		t.Fatalf("reaped %d after the deadline (%v)", n, err)
	}
	final := b.Events.WaitFinal(t, run.ID, wait)
	r := final.Run
	if r.State != research.Succeeded || len(r.Agent.Asks) != 1 || r.Agent.Asks[0].By != "timeout" || !strings.Contains(r.Agent.WrapUp, "no answer") {
		t.Fatalf("ended %s, asks %+v, wrap-up %q", r.State, r.Agent.Asks, r.Agent.WrapUp)
	}
	if r.Captured > smallCap || len(r.Extensions) != 0 {
		t.Fatalf("captured %s of %s with extensions %+v", r.Captured, smallCap, r.Extensions)
	}
	checkAgentEnd(t, b, r)
}

// TestAgentAskContinueWithoutFunds: a Continue the bucket cannot cover is
// refused and changes nothing; the run still asks; Cancel then ends it,
// charging the steps made and showing their figures.
func TestAgentAskContinueWithoutFunds(t *testing.T) {
	t.Parallel()
	b := soloBed(t, false, true)
	b.Fund(alice, billing.BucketCredit, smallCap+billing.Micro/1000)
	b.LLM.SetDefault(llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL"}`)).WithUsage(4000, 500))
	run := confirm(t, b, askQuote(t, b, "Dig into AAPL", smallCap, false))
	waitAsk(t, b, run.ID, 1)
	if _, err := b.Engine.Continue(t.Context(), run.ID, alice); !errors.Is(err, research.ErrInsufficient) {
		t.Fatalf("Continue without funds = %v", err)
	}
	r, err := b.Store.Run(t.Context(), run.ID)
	if err != nil || r.State != research.Paused || r.Agent.Ask == nil || len(r.Extensions) != 0 {
		t.Fatalf("after a refused Continue: %s, %+v, %v", r.State, r.Extensions, err)
	}
	if _, err := b.Engine.Cancel(t.Context(), run.ID, alice); err != nil {
		t.Fatal(err)
	}
	final := b.Events.WaitFinal(t, run.ID, wait)
	r = final.Run
	if r.State != research.Cancelled || r.Captured == 0 || r.Captured > smallCap || final.Report == nil || len(final.Report.Sections) != 1 {
		t.Fatalf("cancelled: %s, captured %s, report %+v", r.State, r.Captured, final.Report)
	}
	checkEnd(t, b, r)
}
