package research

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/market"
)

func (e *Engine) askTimeout() time.Duration {
	if e.AskTimeout > 0 {
		return e.AskTimeout
	}
	return DefaultAskTimeout
}

// executeAgent runs an agent run's loop from its last finished step. ctx
// is the job's; runCtx is cancelled with the cause of a cancel, pause or
// shutdown. Every way out settles the hold once, or pauses the run (a
// pause, an ask-to-continue, a shutdown) keeping it.
func (e *Engine) executeAgent(ctx, runCtx context.Context, r Run, attempt, maxAttempts int) error {
	db := context.WithoutCancel(ctx)
	routes := e.routes(r)
	writer := e.writer(r.Offline)
	budget := newRunBudget(r, func(exposure map[string]Tokens) error {
		_, err := e.Store.UpdateRun(db, r.ID, "worker", "reserve", func(r *Run) error {
			if r.CancelRequested {
				return fmt.Errorf("%w: cancel requested", ErrWrongState)
			}
			r.Exposure = exposure
			return nil
		})
		return err
	})
	rates := agentRates(r)
	var fresh *Run // the run as the last write of this loop returned it: the latest stored state
	for {
		var cur Run
		var err error
		if fresh != nil {
			cur, fresh = *fresh, nil
		} else if cur, err = e.Store.Run(db, r.ID); err != nil {
			return err
		}
		switch {
		case cur.CancelRequested:
			return e.agentEnd(ctx, cur, Cancelled, "cancelled", nil, "the run was cancelled before its answer")
		case cur.PauseRequested:
			return e.pauseOrGoOn(ctx, r.ID, attempt, maxAttempts)
		}
		r = cur
		a := r.Agent
		if a.answered() {
			// The answer was stored and the process stopped before settling.
			return e.agentEnd(ctx, r, "", "", nil, "")
		}
		if pend := a.pending(); len(pend) > 0 {
			next, err := e.agentTools(ctx, runCtx, r, pend)
			if err != nil || next == nil {
				return err
			}
			fresh = next
			continue
		}
		step := a.ModelSteps() + 1
		req := llm.Request{Messages: a.messages(a.First), Tools: llmTools(), MaxTokens: a.Plan.StepOutput}
		prompt := llm.CountRequestTokens(req)
		final, why := a.WrapUp != "", a.WrapUp
		switch {
		case final:
		case step >= a.Plan.MaxSteps:
			final, why = true, fmt.Sprintf("this is the last of your %d steps", a.Plan.MaxSteps)
		case prompt+a.Plan.stepGrowth()+wrapTokens > a.Plan.MaxPrompt:
			final, why = true, "the conversation reached its length limit"
		}
		if !final {
			used, hold := budget.usedIn(r.Bucket), r.Cap()
			keep := a.Plan.wrapReserve(rates, prompt)
			next := billing.SaturatingAdd(rates.Cost(prompt, int64(a.Plan.StepOutput)), keep)
			fits := billing.SaturatingAdd(used, next) <= hold
			// Asking interrupts the owner: only when going on could
			// actually meet the cap before the step limit does.
			if a.AskAt > 0 && !a.askedAt(hold) && billing.SaturatingAdd(used, a.Plan.worstRest(rates, prompt, step)) > hold &&
				(!fits || int64(used)*100 >= int64(hold)*int64(a.AskAt)) {
				return e.agentAsk(ctx, r, used, hold, next)
			}
			if !fits {
				final, why = true, "the budget cap is reached"
			} else {
				req.Budget = keeping{b: budget, keep: keep}
			}
		}
		if final {
			req.Messages = append(req.Messages, llm.Message{Role: llm.RoleUser, Content: wrapUpText(why)})
			req.ToolChoice, req.MaxTokens, req.Budget = llm.ToolChoiceNone, a.Plan.FinalOutput, budget
		}
		note := fmt.Sprintf("step %d of at most %d: thinking", step, a.Plan.MaxSteps)
		if final {
			note = fmt.Sprintf("step %d of at most %d: writing the answer (%s)", step, a.Plan.MaxSteps, why)
		}
		e.publish(e.event(r, note))
		start := e.now()
		res, err := e.call(runCtx, &r, writer, routes, req)
		e.recordFailures(db, r, res)
		if err != nil {
			if runCtx.Err() != nil {
				return e.agentInterrupted(ctx, runCtx, r, &partialUsage{route: res.Route.ID, usage: res.Usage, maxOut: int64(req.MaxTokens)})
			}
			if errors.Is(err, llm.ErrOverBudget) && !final {
				// A retry's or a fallback's worst case no longer fits beside
				// the reserve: the next call is the answer.
				if _, err := e.Store.UpdateRun(db, r.ID, "worker", "wrap up", func(r *Run) error {
					r.Agent.WrapUp = "the budget cap is reached"
					r.Exposure = budget.exposure()
					return nil
				}); err != nil {
					return err
				}
				continue
			}
			// A failed request costs nothing; what the tools returned is
			// still delivered.
			msg := "the model call failed: " + e.public(err, "", "run_id", r.ID, "step", step).Error()
			if errors.Is(err, llm.ErrOverBudget) {
				msg = "the answer did not fit: " + noRoomText(err)
			}
			return e.agentEnd(ctx, r, "", "", nil, msg)
		}
		answer := final || len(res.ToolCalls) == 0
		st := AgentStep{Step: step, Kind: StepModel, Name: "model", Text: CleanText(res.Text), Route: res.Route.ID,
			TokensIn: res.Usage.PromptTokens, TokensOut: res.Usage.CompletionTokens, Source: string(orLocal(res.Usage.CompletionSource)),
			Cost: stepCost(r, res.Route.ID, res.Usage.PromptTokens, res.Usage.CompletionTokens), At: start, Took: e.now().Sub(start)}
		if answer {
			st.Name, st.Label = "answer", "answer"
		} else {
			st.Calls = callIDs(res.ToolCalls, step)
			st.Label = callsLabel(st.Calls)
		}
		exposure := budget.exposure()
		r, err = e.Store.UpdateRun(db, r.ID, "worker", "step done", func(r *Run) error {
			r.Agent.Steps = append(r.Agent.Steps, st)
			r.addUsage(res.Route.ID, res.Usage.PromptTokens, res.Usage.CompletionTokens)
			r.InSource = worseSource(r.InSource, res.Usage.PromptSource)
			r.OutSource = worseSource(r.OutSource, res.Usage.CompletionSource)
			r.Exposure = exposure
			r.Attempts += res.Attempts
			r.Failures += len(res.Failures)
			if a := res.Anomaly; a != nil {
				r.Anomalies = append(r.Anomalies, fmt.Sprintf("step %d on %s: %s", step, a.Route, a.Err))
			}
			if res.Route.ID != "" {
				r.CrossBucket = r.CrossBucket || r.bucketOf(res.Route.ID) != r.Bucket
				r.RouteID = res.Route.ID
			}
			return nil
		})
		if err != nil {
			return err
		}
		if answer {
			return e.agentEnd(ctx, r, "", "", nil, "")
		}
		fresh = &r
	}
}

// callIDs gives every call an id (some servers send none) and keeps the
// calls a step may make plus a few: the rest could only be refused.
func callIDs(calls []llm.ToolCall, step int) []llm.ToolCall {
	out := slices.Clone(calls)
	if len(out) > 16 {
		out = out[:16]
	}
	seen := map[string]bool{}
	for i := range out {
		if out[i].ID == "" || seen[out[i].ID] {
			out[i].ID = fmt.Sprintf("call_%d_%d", step, i)
		}
		seen[out[i].ID] = true
		out[i].Name = clipRunes(CleanText(out[i].Name), 64)
		out[i].Arguments = cutText(out[i].Arguments, 4096)
	}
	return out
}

// askedAt reports whether the run already asked its owner at this cap.
func (a *AgentState) askedAt(cap billing.Money) bool {
	for _, q := range a.Asks {
		if q.Cap == cap {
			return true
		}
	}
	return false
}

// agentTools runs the pending calls of the last model step, in parallel
// (at most MaxParallel per step; the rest are answered with an error), and
// stores their results, returning the run as stored (nil when the run
// ended or paused instead). No call starts after the run was cancelled.
func (e *Engine) agentTools(ctx, runCtx context.Context, r Run, pend []llm.ToolCall) (*Run, error) {
	a := r.Agent
	model := a.Steps[a.lastModel()]
	e.publish(e.event(r, fmt.Sprintf("step %d of at most %d: %s", model.Step, a.Plan.MaxSteps, callsLabel(pend))))
	results := make([]AgentStep, len(pend))
	var wg sync.WaitGroup
	for i, c := range pend {
		pos := slices.IndexFunc(model.Calls, func(m llm.ToolCall) bool { return m.ID == c.ID })
		results[i] = AgentStep{Step: model.Step, Kind: StepTool, Name: c.Name, Label: toolLabel(c.Name, c.Arguments),
			CallID: c.ID, Args: c.Arguments, At: e.now()}
		if pos >= a.Plan.MaxParallel {
			msg := fmt.Sprintf("at most %d tool calls run per step; this one was not run: call it in a later step", a.Plan.MaxParallel)
			results[i].Result, results[i].Error = errorResult(msg), msg
			continue
		}
		if runCtx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int, c llm.ToolCall) {
			defer wg.Done()
			start := time.Now()
			results[i].Result, results[i].Error = e.runTool(runCtx, r, c, a.Plan.ToolResultMax)
			results[i].Took = time.Since(start)
		}(i, c)
	}
	wg.Wait()
	if runCtx.Err() != nil {
		return nil, e.agentInterrupted(ctx, runCtx, r, nil)
	}
	next, err := e.Store.UpdateRun(context.WithoutCancel(ctx), r.ID, "worker", "tools done", func(r *Run) error {
		have := map[string]bool{}
		for _, s := range r.Agent.Steps {
			if s.Kind == StepTool {
				have[s.CallID] = true
			}
		}
		for _, s := range results {
			if !have[s.CallID] {
				r.Agent.Steps = append(r.Agent.Steps, s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &next, nil
}

// agentAsk pauses the run to ask its owner whether to go on.
func (e *Engine) agentAsk(ctx context.Context, r Run, used, cap, next billing.Money) error {
	extra := ceilCent(max(r.Hold/2, next))
	why := fmt.Sprintf("%s of the %s cap is spent (%d%%)", used, cap, int64(used)*100/max(int64(cap), 1))
	if billing.SaturatingAdd(used, next) > cap {
		why = fmt.Sprintf("%s of the %s cap is spent and the next step may need up to %s", used, cap, next)
	}
	now := e.now()
	r, err := e.Store.UpdateRun(context.WithoutCancel(ctx), r.ID, "worker", "asking to continue", func(r *Run) error {
		if r.State != Running {
			return fmt.Errorf("%w: run is %s", ErrWrongState, r.State)
		}
		r.State, r.PausedAt = Paused, now
		r.Agent.Ask = &Ask{At: now, Deadline: now.Add(e.askTimeout()), Spent: used, Cap: cap, Extra: extra, Why: why}
		return nil
	})
	if errors.Is(err, ErrWrongState) {
		return nil // a cancel or pause landed: its own path ends the run
	}
	if err != nil {
		return err
	}
	e.publish(e.event(r, "asking: "+why))
	return nil
}

// ceilCent rounds m up to a whole cent.
func ceilCent(m billing.Money) billing.Money {
	const cent = billing.Micro / 100
	return (m + cent - 1) / cent * cent
}

// agentInterrupted handles a model call or tools whose context ended: a
// cancel settles with what was delivered; a timeout delivers what the
// steps found; a shutdown pauses the run with its finished steps.
func (e *Engine) agentInterrupted(ctx, runCtx context.Context, r Run, partial *partialUsage) error {
	cur, err := e.Store.Run(context.WithoutCancel(ctx), r.ID)
	if err != nil {
		return err
	}
	cause := context.Cause(runCtx)
	switch {
	case errors.Is(cause, ErrLeaseLost):
		return ErrLeaseLost
	case cur.CancelRequested || errors.Is(cause, ErrCancelled):
		return e.agentEnd(ctx, cur, Cancelled, "cancelled mid-step", e.asBilled(partial), "the run was cancelled before its answer")
	case errors.Is(cause, context.DeadlineExceeded):
		return e.agentEnd(ctx, cur, "", "timed out", nil, "the run reached its time limit before its answer")
	default:
		return e.pauseFor(ctx, r.ID, "paused: the server restarted; press Resume to continue from the last finished step")
	}
}

// agentEnd settles an agent run and publishes its final message with the
// report of its steps. to "" decides: succeeded with an answer, partial
// without one when the tools returned figures (charged for the steps
// used), failed at $0 when nothing ran. missing says what is not there.
func (e *Engine) agentEnd(ctx context.Context, r Run, to State, reason string, extra *partialUsage, missing string) error {
	_, err := e.agentSettle(ctx, r, to, reason, extra, missing, "worker")
	if errors.Is(err, ErrWrongState) {
		return nil // settled elsewhere (a cancel won the race)
	}
	return err
}

func (e *Engine) agentSettle(ctx context.Context, r Run, to State, reason string, extra *partialUsage, missing, actor string) (bool, error) {
	a := r.Agent
	answer := strings.TrimSpace(a.Answer())
	if answer != "" {
		missing = ""
	} else if missing == "" {
		missing = "the answer: the model wrote none"
	}
	if to == "" {
		switch {
		case answer != "":
			to = Succeeded
		case a.ToolCalls() > 0 || a.ModelSteps() > 0 && r.TokensIn > 0:
			to = Partial
		default:
			to = Failed
		}
	}
	rep, chart := e.agentReport(ctx, r)
	rep.Missing = missing
	if to == Succeeded {
		rep.Missing = ""
	}
	final, err := e.settle(ctx, r.ID, to, actor, reason, extra, rep.Missing)
	if err != nil {
		return false, err // ErrWrongState: settled elsewhere
	}
	ev := e.event(final, reason)
	if to != Failed || answer != "" {
		ev.Report, ev.Chart = &rep, chart
	}
	e.publish(ev)
	return true, nil
}

// agentReport is an agent run's report: the answer (checked against the
// tools' figures), the figures per symbol the tools returned, the steps,
// and the chart of the last chart call.
func (e *Engine) agentReport(ctx context.Context, r Run) (Report, []byte) {
	a := r.Agent
	rep := Report{Title: titleFor(r), DataSource: e.Market.Name(), Synthetic: r.Synthetic, RuleBased: r.Offline,
		Model: r.Model, Notice: Notice, Question: a.Question}
	if ans := a.Answer(); strings.TrimSpace(ans) != "" {
		rep.Overview = grounded(ans, agentData(a))
	}
	rep.Sections = agentSections(a)
	for _, s := range rep.Sections {
		if s.AsOf.After(rep.AsOf) {
			rep.AsOf = s.AsOf
		}
	}
	for _, s := range a.Steps {
		rep.Steps = append(rep.Steps, StepLine{Step: s.Step, Kind: s.Kind, Label: s.Label, TokensIn: s.TokensIn, TokensOut: s.TokensOut,
			Cost: s.Cost, Took: s.Took, Error: s.Error})
	}
	var chart []byte
	for i := len(a.Steps) - 1; i >= 0; i-- {
		s := a.Steps[i]
		if s.Kind != StepTool || s.Name != "chart" || s.Error != "" {
			continue
		}
		t, _ := toolByName("chart")
		args, err := decodeArgs(t, s.Args)
		if err != nil {
			break
		}
		_, period := periodOf(args.Period, "6m")
		fetch, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		series, _ := market.FetchAll(fetch, e.Market, args.Symbols, period+indicatorLookback)
		cancel()
		var ok []market.Series
		for _, sym := range args.Symbols {
			if ser, found := series[sym]; found {
				ok = append(ok, ser)
			}
		}
		if c, err := e.charts.Chart(ok, market.ChartOptions{Window: period}); err == nil && len(ok) > 0 {
			chart = c
		}
		break
	}
	return rep, chart
}

// agentSections collects, per symbol, the figures its tool results gave.
func agentSections(a *AgentState) []Section {
	by := map[string]*Section{}
	var order []string
	sec := func(sym, asOf string) *Section {
		s, ok := by[sym]
		if !ok {
			s = &Section{Symbol: sym}
			by[sym] = s
			order = append(order, sym)
		}
		if t, err := time.Parse(time.DateOnly, asOf); err == nil && t.After(s.AsOf) {
			s.AsOf = t
		}
		return s
	}
	add := func(s *Section, label string, v *float64, unit string) {
		if v != nil {
			s.Figures = append(s.Figures, Figure{Label: label, Value: fmt.Sprintf("%g%s", *v, unit)})
		}
	}
	for _, st := range a.Steps {
		if st.Kind != StepTool || st.Error != "" {
			continue
		}
		switch st.Name {
		case "price_summary":
			var p priceResult
			if json.Unmarshal([]byte(st.Result), &p) != nil || p.Symbol == "" {
				continue
			}
			s := sec(p.Symbol, p.AsOf)
			cur := ""
			if p.Currency != "" {
				cur = " " + p.Currency
			}
			s.Figures = append(s.Figures, Figure{Label: "Close (" + p.AsOf + ")", Value: fmt.Sprintf("%g%s", p.Close, cur)})
			add(s, "Return "+p.Period+" (since "+p.From+", price only)", p.ReturnPct, "%")
			if p.High != nil && p.Low != nil {
				s.Figures = append(s.Figures, Figure{Label: p.Period + " high / low", Value: fmt.Sprintf("%g / %g", *p.High, *p.Low)})
			}
			add(s, "From 52-week high", p.FromHigh52w, "%")
			add(s, "Volatility 20d (annualised)", p.Vol20, "%")
			add(s, "Max drawdown ("+p.Period+")", p.MaxDD, "%")
			s.Warnings = append(s.Warnings, p.Warnings...)
		case "indicators":
			var p indicatorResult
			if json.Unmarshal([]byte(st.Result), &p) != nil || p.Symbol == "" {
				continue
			}
			s := sec(p.Symbol, p.AsOf)
			add(s, "RSI 14", p.RSI14, "")
			if p.SMA50 != nil && p.SMA200 != nil {
				s.Figures = append(s.Figures, Figure{Label: "SMA 50 / 200", Value: fmt.Sprintf("%g / %g", *p.SMA50, *p.SMA200)})
			}
			add(s, "Distance from SMA 200", p.DistSMA200, "%")
			add(s, "MACD histogram", p.MACDHist, "")
			add(s, "Bollinger %B", p.PercentB, "")
			if p.WeeklyTrend != "" {
				s.Figures = append(s.Figures, Figure{Label: "Weekly trend", Value: p.WeeklyTrend})
			}
		case "relative_performance":
			var p relativeResult
			if json.Unmarshal([]byte(st.Result), &p) != nil {
				continue
			}
			for _, row := range p.Rows {
				if row.ReturnPct == nil {
					continue
				}
				s := sec(row.Symbol, row.AsOf)
				v := fmt.Sprintf("%g%%", *row.ReturnPct)
				if row.ExcessPts != nil && p.BenchmarkReturn != nil {
					v += fmt.Sprintf(" (%s %g%%, excess %+g pts)", p.Benchmark, *p.BenchmarkReturn, *row.ExcessPts)
				}
				s.Figures = append(s.Figures, Figure{Label: "Return " + p.Period + " vs " + strings.SplitN(p.Benchmark, " ", 2)[0], Value: v})
			}
		}
	}
	out := make([]Section, 0, len(order))
	for _, sym := range order {
		s := by[sym]
		s.Warnings = slices.Compact(s.Warnings)
		out = append(out, *s)
	}
	return out
}

// StepLine is one step of an agent run as a report and a receipt list it.
type StepLine struct {
	Step      int           `json:"step"`
	Kind      StepKind      `json:"kind"`
	Label     string        `json:"label"`
	TokensIn  int64         `json:"tokens_in,omitempty"`
	TokensOut int64         `json:"tokens_out,omitempty"`
	Cost      billing.Money `json:"cost,omitempty"`
	Took      time.Duration `json:"took"`
	Error     string        `json:"error,omitempty"`
}

// agentEvent fills an event's step fields from an agent run.
func agentEvent(ev *Event, r Run) {
	a := r.Agent
	n, label := a.Current()
	ev.StageCount = a.Plan.MaxSteps
	ev.Stage, ev.StageName = min(n, a.Plan.MaxSteps), label
	ev.Percent = min(100, 100*a.ModelSteps()/max(a.Plan.MaxSteps, 1))
	ev.Remaining = 0
	if a.Ask != nil && r.State == Paused {
		ev.StageName = "asking to continue"
	}
}

// receiptSteps lists an agent run's steps for its receipt.
func receiptSteps(a *AgentState) []billing.ReceiptStep {
	out := make([]billing.ReceiptStep, 0, len(a.Steps))
	for _, s := range a.Steps {
		out = append(out, billing.ReceiptStep{Step: s.Step, Kind: string(s.Kind), Label: s.Label, TokensIn: s.TokensIn,
			TokensOut: s.TokensOut, Cost: s.Cost, Took: s.Took, Error: clipRunes(s.Error, 200)})
	}
	return out
}

// agentNotes say on a receipt how an agent run went: its steps, the
// extensions its owner added, its wrap-up and the questions it asked.
func agentNotes(r Run) []string {
	a := r.Agent
	notes := []string{fmt.Sprintf("agent run: %d model call(s) and %d tool call(s), at most %d steps; step costs are each rounded up, the charge once on the total",
		a.ModelSteps(), a.ToolCalls(), a.Plan.MaxSteps)}
	for _, x := range r.Extensions {
		notes = append(notes, fmt.Sprintf("cap extended by %s with consent (%s, hold %d)", x.Amount, x.By, x.HoldID))
	}
	for _, q := range a.Asks {
		notes = append(notes, fmt.Sprintf("asked to continue at %s of %s: %s (%s)", q.Spent, q.Cap, q.Answer, q.By))
	}
	if a.WrapUp != "" {
		notes = append(notes, "wrapped up: "+a.WrapUp)
	}
	return notes
}
