package research_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// agentChaos wraps the engine's writer to act at one model call of a run,
// at its first delta: cancel it, pause it, or crash (a panic the engine
// recovers from, leaving the run as a killed process would: running, with
// its finished steps stored, to be resumed by another Execute).
type agentChaos struct {
	inner  research.Writer
	engine *research.Engine
	runID  string
	at     int
	action string
	calls  int
}

type agentCrash struct{}

func (c *agentChaos) Stream(ctx context.Context, routes []llm.Route, req llm.Request, onDelta func(string, int64)) (llm.Result, error) {
	c.calls++
	if c.calls != c.at {
		return c.inner.Stream(ctx, routes, req, onDelta)
	}
	acted := false
	return c.inner.Stream(ctx, routes, req, func(text string, out int64) {
		onDelta(text, out)
		if acted {
			return
		}
		acted = true
		switch c.action {
		case "cancel":
			_, _ = c.engine.Cancel(context.Background(), c.runID, alice)
		case "pause":
			_, _ = c.engine.Pause(context.Background(), c.runID, alice)
		case "crash":
			panic(agentCrash{})
		}
	})
}

// agentStep is one random scripted model answer: tool calls (some
// parallel, some malformed, some to no tool), a text answer, a failure, or
// usage the provider misreports.
func agentStep(rng *rand.Rand) llmtest.Response {
	syms := []string{"AAPL", "MSFT", "NVDA", "SPY"}
	call := func() llmtest.ToolCall {
		s := syms[rng.IntN(len(syms))]
		switch rng.IntN(8) {
		case 0:
			return llmtest.Call("price_summary", `{"symbol":"`+s+`"`) // cut
		case 1:
			return llmtest.Call("sell_everything", `{}`)
		case 2:
			return llmtest.Call("relative_performance", `{"symbols":["`+s+`","AAPL"],"period":"1m"}`)
		case 3:
			return llmtest.Call("indicators", `{"symbol":"`+s+`"}`)
		case 4:
			return llmtest.Call("watchlist_scan", `{"watchlist":"semis"}`)
		default:
			return llmtest.Call("price_summary", `{"symbol":"`+s+`","period":"3m"}`)
		}
	}
	switch rng.IntN(10) {
	case 0:
		return llmtest.Stream("The ", "answer: ", "AAPL ", "is ", "firm.")
	case 1:
		return llmtest.Error(500, "down")
	case 2:
		return llmtest.Broken("half ", "an ")
	case 3:
		return llmtest.ToolCalls(call(), call()).WithUsage(3000, 400)
	case 4:
		return llmtest.ToolCalls(call()).WithoutUsage()
	case 5:
		var cs []llmtest.ToolCall
		for range 1 + rng.IntN(6) {
			cs = append(cs, call())
		}
		return llmtest.ToolCalls(cs...)
	default:
		return llmtest.ToolCalls(call())
	}
}

// TestPropertyAgentRuns drives randomized agent runs (500; fewer under the
// race detector) through engines on SQLite and the fake API: random tool
// scripts (parallel, malformed, unknown tools, failures, misreported
// usage, endless loops), random caps with ask-to-continue on or off, and
// random cancels, pauses (resumed or cancelled), crashes (resumed) and
// answers to ask-to-continue (Continue, Wrap up, no answer, Cancel). After
// each run: one terminal state, captured within the cap and the consented
// extensions, a failed run free, a run not cut by a cancel charged exactly
// its steps, and no finished step called again; at the end of each shard
// the ledger check is clean and no hold is open.
func TestPropertyAgentRuns(t *testing.T) {
	t.Parallel()
	const shards = 4
	runs := 500
	if raceEnabled {
		runs = 40
	}
	results := make([]map[string]int, shards)
	t.Run("shards", func(t *testing.T) {
		for k := range shards {
			t.Run(fmt.Sprint(k), func(t *testing.T) {
				t.Parallel()
				results[k] = agentShard(t, uint64(100+k), runs/shards)
			})
		}
	})
	all := map[string]int{}
	for _, r := range results {
		for k, v := range r {
			all[k] += v
		}
	}
	t.Logf("%d agent runs: %v", runs, all)
}

func agentShard(t *testing.T, seed uint64, runs int) map[string]int {
	b := soloBed(t, false, false)
	b.Fund(alice, billing.BucketCredit, 100*billing.Micro)
	ch := &agentChaos{inner: b.Engine.LLM, engine: b.Engine}
	b.Engine.LLM = ch
	rng := rand.New(rand.NewPCG(seed, 2))
	seen := map[string]int{}
	caps := []billing.Money{0, billing.Micro * 2 / 100, billing.Micro * 2 / 100, billing.Micro * 3 / 100, billing.Micro / 10}
	for i := range runs {
		b.LLM.ClearQueue()
		for range rng.IntN(10) {
			b.LLM.Enqueue(agentStep(rng))
		}
		// After the script: an endless tool loop, or an answer.
		if rng.IntN(3) == 0 {
			b.LLM.SetDefault(llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL"}`)).WithUsage(3000, 300))
		} else {
			b.LLM.SetDefault(llmtest.Stream("Done."))
		}
		answerWhenNoTools(b, "Wrapped up.")
		q := askQuote(t, b, "How is AAPL doing?", caps[rng.IntN(len(caps))], rng.IntN(3) == 0)
		run := confirm(t, b, q)
		ch.runID, ch.calls, ch.at, ch.action = run.ID, 0, 0, ""
		action := []string{"none", "none", "cancel", "pause", "crash"}[rng.IntN(5)]
		if action != "none" {
			ch.at, ch.action = 1+rng.IntN(6), action
		}
		seen["action "+action]++
		first := len(b.LLM.Requests())
		what := fmt.Sprintf("run %d (%s at call %d, cap %s)", i, action, ch.at, q.Agent.Cap)
		err := b.Engine.Execute(t.Context(), run.ID, 1, 3)
		if err != nil && action != "crash" {
			t.Fatalf("%s: execute: %v", what, err)
		}
		var r research.Run
		for attempt := 2; ; attempt++ {
			if r, err = b.Store.Run(t.Context(), run.ID); err != nil {
				t.Fatal(err)
			}
			if r.State.Terminal() {
				break
			}
			if attempt > 12 {
				t.Fatalf("%s never ended: %s", what, r.State)
			}
			ch.at = 0 // act once per run
			if r.State == research.Paused {
				var err error
				switch {
				case r.Agent.Ask != nil:
					answer := []string{"continue", "wrapup", "timeout", "cancel"}[rng.IntN(4)]
					seen["ask "+answer]++
					switch answer {
					case "continue":
						_, err = b.Engine.Continue(t.Context(), run.ID, alice)
					case "wrapup":
						_, err = b.Engine.WrapUp(t.Context(), run.ID, alice)
					case "timeout":
						b.Clock.Advance(research.DefaultAskTimeout + time.Second)
						_, err = b.Engine.Reap(t.Context(), 1000*time.Hour)
					case "cancel":
						_, err = b.Engine.Cancel(t.Context(), run.ID, alice)
					}
				case rng.IntN(2) == 0:
					_, err = b.Engine.Cancel(t.Context(), run.ID, alice)
				default:
					_, err = b.Engine.Resume(t.Context(), run.ID, alice)
				}
				if err != nil {
					t.Fatalf("%s: answering a %s run: %v", what, r.State, err)
				}
				continue // the next turn executes the queued run, or finds it ended
			}
			// Queued (resumed, continued) or running after a crash: the
			// queue would run it again; do so.
			if err := b.Engine.Execute(t.Context(), run.ID, attempt, 12); err != nil {
				t.Fatalf("%s: execute attempt %d: %v", what, attempt, err)
			}
		}
		seen[string(r.State)]++
		checkRun(t, b.Store, r, what)
		checkAgentRun(t, b, r, b.LLM.Requests()[first:], what)
	}
	b.CheckSettled()
	return seen
}

// checkAgentRun asserts an ended agent run's own invariants.
func checkAgentRun(t *testing.T, b *testbed.Bed, r research.Run, reqs []llmtest.Request, what string) {
	t.Helper()
	if r.Captured > r.Cap() {
		t.Fatalf("%s: captured %s of a %s cap", what, r.Captured, r.Cap())
	}
	if r.Agent.ModelSteps() > r.Agent.Plan.MaxSteps {
		t.Fatalf("%s: %d model steps, past the limit", what, r.Agent.ModelSteps())
	}
	var in, out int64
	for _, s := range agentSteps(r, research.StepModel) {
		in, out = in+s.TokensIn, out+s.TokensOut
	}
	if r.State != research.Cancelled && (r.TokensIn != in || r.TokensOut != out) {
		t.Fatalf("%s: %s with %d/%d tokens charged, its steps used %d/%d", what, r.State, r.TokensIn, r.TokensOut, in, out)
	}
	if r.TokensIn < in || r.TokensOut < out {
		t.Fatalf("%s: charged %d/%d tokens, less than its steps' %d/%d", what, r.TokensIn, r.TokensOut, in, out)
	}
	if r.State != research.Failed && r.State != research.Expired && r.Captured != soloPrice.Cost(r.TokensIn, r.TokensOut) && r.Captured != r.Cap() {
		t.Fatalf("%s: captured %s for %d/%d tokens (%s)", what, r.Captured, r.TokensIn, r.TokensOut, soloPrice.Cost(r.TokensIn, r.TokensOut))
	}
	// A finished step is never called again: the calls' finished-step
	// counts never go back.
	last := 0
	for _, q := range reqs {
		n := assistantTurns(q)
		if n < last {
			t.Fatalf("%s: a call after %d finished steps came after one after %d", what, n, last)
		}
		last = n
	}
	if last > r.Agent.ModelSteps() {
		t.Fatalf("%s: a call after %d finished steps, but %d are stored", what, last, r.Agent.ModelSteps())
	}
}
