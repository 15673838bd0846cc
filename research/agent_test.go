package research_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
	"github.com/tokensforge/forgebot/research/market"
)

// askQuote quotes an agent question on the solo route; cap 0 is the default.
func askQuote(t *testing.T, b *testbed.Bed, question string, cap billing.Money, askOff bool) research.Quote {
	t.Helper()
	return quote(t, b, research.Request{Kind: research.KindAsk, Depth: research.Agent, Question: question, Model: "gpt-solo", Cap: cap, AskOff: askOff})
}

// answerWhenNoTools makes the fake a model that honours tool_choice "none":
// such a request is answered in text.
func answerWhenNoTools(b *testbed.Bed, text string) {
	b.LLM.SetResponder(func(q llmtest.Request) (llmtest.Response, bool) {
		if q.ToolChoice == "none" {
			return llmtest.Stream(strings.SplitAfter(text, " ")...), true
		}
		return llmtest.Response{}, false
	})
}

// agentSteps returns the run's stored steps of a kind.
func agentSteps(r research.Run, kind research.StepKind) []research.AgentStep {
	var out []research.AgentStep
	for _, s := range r.Agent.Steps {
		if s.Kind == kind {
			out = append(out, s)
		}
	}
	return out
}

// checkAgentEnd asserts what every agent ending keeps, besides checkEnd's:
// captured within the cap and the consented extensions, the charge is the
// model steps' tokens at the route's price, and the fake saw no more model
// calls than the step limit.
func checkAgentEnd(t *testing.T, b *testbed.Bed, r research.Run) {
	t.Helper()
	if r.Captured > r.Cap() {
		t.Errorf("captured %s of a %s cap", r.Captured, r.Cap())
	}
	var in, out int64
	for _, s := range agentSteps(r, research.StepModel) {
		in, out = in+s.TokensIn, out+s.TokensOut
	}
	if r.State != research.Failed && r.State != research.Cancelled && (in != r.TokensIn || out != r.TokensOut || r.Captured != soloPrice.Cost(in, out)) {
		t.Errorf("charged %s for %d in / %d out; the steps sum to %d in / %d out (%s)", r.Captured, r.TokensIn, r.TokensOut, in, out, soloPrice.Cost(in, out))
	}
	if n := len(b.LLM.Requests()); n > research.DefaultAgentPlan.MaxSteps {
		t.Errorf("%d model calls, past the step limit of %d", n, research.DefaultAgentPlan.MaxSteps)
	}
	checkEnd(t, b, r)
}

// TestAgentOneStep: a model that answers at once ends the loop after one
// step: succeeded, charged that step, its answer in the report.
func TestAgentOneStep(t *testing.T) {
	t.Parallel()
	b := soloBed(t, false, true)
	b.Fund(alice, billing.BucketCredit, billing.Micro)
	b.LLM.Enqueue(llmtest.Stream("I ", "need ", "no ", "data ", "for ", "that."))
	q := askQuote(t, b, "What does RSI mean?", 0, false)
	if q.Agent == nil || q.Hold <= 0 || q.Hold > q.Agent.Cap || q.Agent.MaxSteps != 12 || q.AskPolicy == "" || q.StepPolicy == "" {
		t.Fatalf("agent quote = %+v", q.Agent)
	}
	run := confirm(t, b, q)
	final := b.Events.WaitFinal(t, run.ID, wait)
	r := final.Run
	if r.State != research.Succeeded || final.Report == nil || !strings.Contains(final.Report.Overview, "no data for that") {
		t.Fatalf("ended %s (%s), report %+v", r.State, r.Error, final.Report)
	}
	if got := agentSteps(r, research.StepModel); len(got) != 1 || got[0].Name != "answer" {
		t.Fatalf("steps = %+v", r.Agent.Steps)
	}
	reqs := b.LLM.Requests()
	if len(reqs) != 1 || len(reqs[0].Tools) != 5 || reqs[0].ToolChoice != "auto" {
		t.Fatalf("requests = %d, tools %v", len(reqs), reqs[0].Tools)
	}
	checkAgentEnd(t, b, r)
}

// TestAgentManySteps: tool calls, their results back to the model, then an
// answer: every step stored with its usage, the figures in the report.
func TestAgentManySteps(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := soloBed(t, pg, true)
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		b.LLM.Enqueue(
			llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"NVDA","period":"3m"}`)),
			llmtest.ToolCalls(llmtest.Call("indicators", `{"symbol":"nvda"}`)),
			llmtest.Stream("NVDA ", "looks ", "firm."),
		)
		run := confirm(t, b, askQuote(t, b, "Is NVDA overbought?", 0, false))
		final := b.Events.WaitFinal(t, run.ID, wait)
		r := final.Run
		if r.State != research.Succeeded {
			t.Fatalf("ended %s (%s)", r.State, r.Error)
		}
		tools := agentSteps(r, research.StepTool)
		if len(agentSteps(r, research.StepModel)) != 3 || len(tools) != 2 || tools[0].Error != "" || tools[1].Error != "" {
			t.Fatalf("steps = %+v", r.Agent.Steps)
		}
		reqs := b.LLM.Requests()
		if len(reqs) != 3 {
			t.Fatalf("%d requests", len(reqs))
		}
		last := reqs[2].Messages
		if last[len(last)-1].Role != "tool" || !strings.Contains(last[len(last)-1].Content, `"rsi14"`) || last[len(last)-2].CallNames()[0] != "indicators" {
			t.Fatalf("the third call did not carry the tool results: %+v", last[len(last)-2:])
		}
		var p map[string]any
		if err := json.Unmarshal([]byte(tools[0].Result), &p); err != nil || p["symbol"] != "NVDA" || p["period"] != "3m" {
			t.Fatalf("price summary result %s (%v)", tools[0].Result, err)
		}
		if final.Report == nil || len(final.Report.Sections) != 1 || final.Report.Sections[0].Symbol != "NVDA" || len(final.Report.Steps) != 5 {
			t.Fatalf("report = %+v", final.Report)
		}
		checkAgentEnd(t, b, r)
	})
}

// TestAgentParallelToolCalls: one turn with several calls runs them all and
// answers each by its id; calls past MaxParallel are refused to the model.
func TestAgentParallelToolCalls(t *testing.T) {
	t.Parallel()
	b := soloBed(t, false, true)
	b.Fund(alice, billing.BucketCredit, billing.Micro)
	syms := []string{"NVDA", "AMD", "AVGO", "TSM", "QCOM"}
	var calls []llmtest.ToolCall
	for i, s := range syms {
		calls = append(calls, llmtest.ToolCall{ID: "c" + string(rune('a'+i)), Name: "price_summary", Arguments: `{"symbol":"` + s + `"}`})
	}
	b.LLM.Enqueue(llmtest.ToolCalls(calls...).WithArgChunks(4), llmtest.Stream("Compared."))
	run := confirm(t, b, askQuote(t, b, "Compare the semis", 0, false))
	r := b.Events.WaitFinal(t, run.ID, wait).Run
	if r.State != research.Succeeded {
		t.Fatalf("ended %s (%s)", r.State, r.Error)
	}
	tools := agentSteps(r, research.StepTool)
	if len(tools) != 5 {
		t.Fatalf("tool steps = %+v", tools)
	}
	max := research.DefaultAgentPlan.MaxParallel
	for i, s := range tools {
		if s.CallID != calls[i].ID || (i < max) != (s.Error == "") {
			t.Fatalf("tool step %d = %+v", i, s)
		}
	}
	if !strings.Contains(tools[max].Result, "at most") {
		t.Fatalf("the call past the limit got %s", tools[max].Result)
	}
	second := b.LLM.Requests()[1].Messages
	ids := []string{}
	for _, m := range second {
		if m.Role == "tool" {
			ids = append(ids, m.ToolCallID)
		}
	}
	if !slices.Equal(ids, []string{"ca", "cb", "cc", "cd", "ce"}) {
		t.Fatalf("tool results answered %v", ids)
	}
	checkAgentEnd(t, b, r)
}

// TestAgentBadCalls: malformed arguments, arguments that break the schema
// and an unknown tool each go back to the model as a tool result, and the
// run goes on to its answer.
func TestAgentBadCalls(t *testing.T) {
	t.Parallel()
	b := soloBed(t, false, true)
	b.Fund(alice, billing.BucketCredit, billing.Micro)
	b.LLM.Enqueue(
		llmtest.ToolCalls(
			llmtest.Call("price_summary", `{"symbol": "NVDA"`),                  // cut JSON
			llmtest.Call("price_summary", `{"symbol":"NVDA","period":"5y"}`),    // not in the enum
			llmtest.Call("relative_performance", `{"symbols":[],"extra":true}`), // unknown field
			llmtest.Call("buy_stock", `{"symbol":"NVDA"}`),                      // no such tool
		),
		llmtest.ToolCalls(llmtest.Call("indicators", `{"symbol":"NOT A SYMBOL!!"}`)),
		llmtest.Stream("I could not get the data."),
	)
	run := confirm(t, b, askQuote(t, b, "Is NVDA up?", 0, false))
	r := b.Events.WaitFinal(t, run.ID, wait).Run
	if r.State != research.Succeeded {
		t.Fatalf("ended %s (%s)", r.State, r.Error)
	}
	tools := agentSteps(r, research.StepTool)
	want := []string{"not a JSON object", "period", "unknown", "unknown tool", "invalid"}
	if len(tools) != len(want) {
		t.Fatalf("tool steps = %+v", tools)
	}
	for i, s := range tools {
		if !strings.Contains(s.Error, want[i]) || !strings.HasPrefix(s.Result, `{"error":`) {
			t.Errorf("call %d: error %q, result %s; want %q", i, s.Error, s.Result, want[i])
		}
	}
	second := b.LLM.Requests()[1].Messages
	if n := len(second); second[n-1].Role != "tool" || !strings.Contains(second[n-1].Content, "unknown tool") {
		t.Fatalf("the model did not read the refusal: %+v", second[n-1])
	}
	checkAgentEnd(t, b, r)
}

// TestAgentEndlessLoopStopsAtTheStepLimit: a model that calls tools forever
// makes exactly MaxSteps calls; the last one allows no tools, and as this
// one calls tools anyway the run ends partial with the figures it got.
func TestAgentEndlessLoopStopsAtTheStepLimit(t *testing.T) {
	t.Parallel()
	b := soloBed(t, false, true)
	b.Fund(alice, billing.BucketCredit, billing.Micro)
	b.LLM.SetDefault(llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL"}`)))
	run := confirm(t, b, askQuote(t, b, "Loop forever", 0, true))
	final := b.Events.WaitFinal(t, run.ID, wait)
	r := final.Run
	reqs := b.LLM.Requests()
	max := research.DefaultAgentPlan.MaxSteps
	if len(reqs) != max || reqs[max-1].ToolChoice != "none" || reqs[max-2].ToolChoice != "auto" {
		t.Fatalf("%d requests, the last with tool_choice %q", len(reqs), reqs[len(reqs)-1].ToolChoice)
	}
	if r.State != research.Partial || final.Report == nil || len(final.Report.Sections) != 1 || !strings.Contains(final.Report.Missing, "answer") {
		t.Fatalf("ended %s (%s), report %+v", r.State, r.Error, final.Report)
	}
	checkAgentEnd(t, b, r)
}

// TestAgentReachesTheCap: steps that cost a lot meet a small cap; the model
// is told to wrap up and answers from the reserve; captured stays within
// the cap and the step limit was not reached.
func TestAgentReachesTheCap(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := soloBed(t, pg, true)
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		b.LLM.SetDefault(llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL"}`)).WithUsage(4000, 500))
		answerWhenNoTools(b, "Wrapping up: AAPL as far as I got.")
		cap := billing.Micro * 4 / 100 // $0.04
		q := askQuote(t, b, "Keep digging into AAPL", cap, true)
		if q.Hold != cap {
			t.Fatalf("hold %s, want the cap %s (the step limit could cost %s)", q.Hold, cap, q.Agent.WorstCase)
		}
		run := confirm(t, b, q)
		final := b.Events.WaitFinal(t, run.ID, wait)
		r := final.Run
		reqs := b.LLM.Requests()
		if r.State != research.Succeeded || !strings.Contains(final.Report.Overview, "Wrapping up") {
			t.Fatalf("ended %s (%s), answer %q", r.State, r.Error, final.Report.Overview)
		}
		if len(reqs) >= research.DefaultAgentPlan.MaxSteps || reqs[len(reqs)-1].ToolChoice != "none" || len(reqs) < 3 {
			t.Fatalf("%d requests; the last allowed tools: %q", len(reqs), reqs[len(reqs)-1].ToolChoice)
		}
		if !strings.Contains(reqs[len(reqs)-1].Messages[len(reqs[len(reqs)-1].Messages)-1].Content, "cap") {
			t.Fatalf("the wrap-up message does not say why: %+v", reqs[len(reqs)-1].Messages)
		}
		if r.Captured > cap || r.Captured < cap/2 {
			t.Fatalf("captured %s of a %s cap", r.Captured, cap)
		}
		checkAgentEnd(t, b, r)
	})
}

// gatedMarket blocks every fetch until release is closed (or its context
// ends), counting the fetches that started.
type gatedMarket struct {
	market.Provider
	started chan string
	release chan struct{}
	count   *atomic.Int64
}

func (m gatedMarket) History(ctx context.Context, symbol string, lookback time.Duration) (market.Series, error) {
	m.count.Add(1)
	select {
	case m.started <- symbol:
	default:
	}
	select {
	case <-m.release:
		return m.Provider.History(ctx, symbol, lookback)
	case <-ctx.Done():
		return market.Series{}, context.Cause(ctx)
	}
}

// TestAgentCancelMidTool: a cancel while a tool fetches stops the tool at
// once; no model call and no tool call starts after it; the run ends
// cancelled, charged for the model step it made.
func TestAgentCancelMidTool(t *testing.T) {
	t.Parallel()
	b := soloBed(t, false, true)
	b.Fund(alice, billing.BucketCredit, billing.Micro)
	b.LLM.SetDefault(llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL"}`), llmtest.Call("indicators", `{"symbol":"MSFT"}`)))
	gm := gatedMarket{Provider: b.Market, started: make(chan string, 8), release: make(chan struct{}), count: &atomic.Int64{}}
	b.Engine.Market = gm
	run := confirm(t, b, askQuote(t, b, "AAPL and MSFT?", 0, true))
	select {
	case <-gm.started:
	case <-time.After(wait):
		t.Fatal("no tool fetched")
	}
	if _, err := b.Engine.Cancel(t.Context(), run.ID, alice); err != nil {
		t.Fatal(err)
	}
	final := b.Events.WaitFinal(t, run.ID, wait)
	fetches, reqs := gm.count.Load(), len(b.LLM.Requests())
	close(gm.release)
	r := final.Run
	if r.State != research.Cancelled || reqs != 1 || fetches > 2 {
		t.Fatalf("ended %s after %d model calls and %d fetches", r.State, reqs, fetches)
	}
	if len(agentSteps(r, research.StepModel)) != 1 || len(agentSteps(r, research.StepTool)) != 0 || r.Captured != soloPrice.Cost(r.TokensIn, r.TokensOut) || r.Captured == 0 {
		t.Fatalf("steps %+v, captured %s", r.Agent.Steps, r.Captured)
	}
	checkAgentEnd(t, b, r)
}

// TestAgentCancelMidStream: a cancel while the model streams closes the
// stream; nothing starts after it; the delivered tokens are charged.
func TestAgentCancelMidStream(t *testing.T) {
	t.Parallel()
	b := soloBed(t, false, true)
	b.Fund(alice, billing.BucketCredit, billing.Micro)
	gate := make(chan struct{})
	b.LLM.Enqueue(llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL"}`)), llmtest.Stream("one ", "two ", "three").WithGate(gate).WithoutUsage())
	run := confirm(t, b, askQuote(t, b, "AAPL?", 0, true))
	gate <- struct{}{}
	b.Events.Wait(t, run.ID, wait, func(ev research.Event) bool { return ev.Run.Agent != nil && ev.Note == "writing" })
	if _, err := b.Engine.Cancel(t.Context(), run.ID, alice); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-b.LLM.Disconnected():
		if d.Request != 1 {
			t.Fatalf("disconnect from request %d", d.Request)
		}
	case <-time.After(wait):
		t.Fatal("the stream was not closed")
	}
	final := b.Events.WaitFinal(t, run.ID, wait)
	r := final.Run
	if r.State != research.Cancelled || len(b.LLM.Requests()) != 2 || len(agentSteps(r, research.StepTool)) != 1 {
		t.Fatalf("ended %s after %d model calls, steps %+v", r.State, len(b.LLM.Requests()), r.Agent.Steps)
	}
	if r.TokensIn <= agentSteps(r, research.StepModel)[0].TokensIn || final.Report == nil || len(final.Report.Sections) != 1 {
		t.Fatalf("the interrupted call was not charged (%d in), or the figures not shown (%+v)", r.TokensIn, final.Report)
	}
	if r.Captured > r.Cap() {
		t.Fatalf("captured %s of %s", r.Captured, r.Cap())
	}
	b.CheckSettled()
}

// TestAgentOffline: the offline analyst's planner answers a question with
// the tools (a scan, prices, indicators, relative performance, a chart),
// every figure of its answer found in their results.
func TestAgentOffline(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := testbed.New(t, testbed.Options{Postgres: pg})
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		q := quote(t, b, research.Request{Kind: research.KindAsk, Depth: research.Agent, Question: "is NVDA overbought against the other semis?"})
		run := confirm(t, b, q)
		final := b.Events.WaitFinal(t, run.ID, wait)
		r := final.Run
		if r.State != research.Succeeded || final.Report == nil {
			t.Fatalf("ended %s (%s)", r.State, r.Error)
		}
		ans := final.Report.Overview
		if !strings.Contains(ans, "NVDA") || !strings.Contains(ans, "RSI 14") || strings.Contains(ans, "Grounding check") {
			t.Fatalf("answer = %q", ans)
		}
		names := map[string]bool{}
		for _, s := range agentSteps(r, research.StepTool) {
			names[s.Name] = true
			if s.Error != "" {
				t.Errorf("tool %s failed: %s", s.Label, s.Error)
			}
		}
		for _, n := range []string{"watchlist_scan", "price_summary", "indicators", "relative_performance", "chart"} {
			if !names[n] {
				t.Errorf("the planner never called %s", n)
			}
		}
		if final.Chart == nil || len(final.Report.Sections) < 2 {
			t.Fatalf("chart %d bytes, %d sections", len(final.Chart), len(final.Report.Sections))
		}
		if r.Captured != r.Price.Cost(r.TokensIn, r.TokensOut) || r.Captured == 0 {
			t.Fatalf("captured %s for %d/%d tokens", r.Captured, r.TokensIn, r.TokensOut)
		}
		checkEnd(t, b, r)
	})
}
