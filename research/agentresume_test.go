package research_test

import (
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// assistantTurns counts a request's assistant messages: the model steps
// finished before it.
func assistantTurns(q llmtest.Request) int {
	n := 0
	for _, m := range q.Messages {
		if m.Role == "assistant" {
			n++
		}
	}
	return n
}

// TestAgentPauseResumeAcrossRestart: a pause while a model step streams
// takes effect after that step is stored (before its tools ran); the
// process stops; another instance resumes the run from the stored step: it
// runs the pending tools and goes on. The fake sees no repeated call for a
// finished step, and the charge equals the sum of the steps.
func TestAgentPauseResumeAcrossRestart(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := soloBed(t, pg, true)
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		gate := make(chan struct{})
		b.LLM.Enqueue(
			llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL"}`)),
			llmtest.ToolCalls(llmtest.Call("indicators", `{"symbol":"AAPL"}`)).WithGate(gate),
			llmtest.Stream("AAPL ", "looks ", "firm."),
		)
		run := confirm(t, b, askQuote(t, b, "Is AAPL firm?", 0, false))
		<-b.LLM.Received(2)
		if _, err := b.Engine.Pause(t.Context(), run.ID, alice); err != nil {
			t.Fatal(err)
		}
		close(gate)
		paused := b.Events.Wait(t, run.ID, wait, func(ev research.Event) bool { return ev.Run.State == research.Paused }).Run
		if got := len(agentSteps(paused, research.StepModel)); got != 2 || len(paused.Agent.Steps) != 3 {
			t.Fatalf("paused with %d model steps, %+v", got, paused.Agent.Steps)
		}
		// The process stops; another one resumes the run.
		if err := b.Store.StopWorkers(t.Context()); err != nil {
			t.Fatal(err)
		}
		_, other := b.InstanceWithWorkers()
		if _, err := other.Resume(t.Context(), run.ID, alice); err != nil {
			t.Fatal(err)
		}
		final := b.Events.WaitFinal(t, run.ID, wait)
		r := final.Run
		if r.State != research.Succeeded || len(agentSteps(r, research.StepTool)) != 2 {
			t.Fatalf("ended %s (%s), steps %+v", r.State, r.Error, r.Agent.Steps)
		}
		reqs := b.LLM.Requests()
		if len(reqs) != 3 {
			t.Fatalf("%d model calls, want 3: a finished step was called again", len(reqs))
		}
		for i, q := range reqs {
			if assistantTurns(q) != i {
				t.Fatalf("call %d came after %d finished steps", i, assistantTurns(q))
			}
		}
		checkAgentEnd(t, b, r)
	})
}
