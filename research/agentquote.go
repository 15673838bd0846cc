package research

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/market"
)

// AgentQuote is what an agent run's quote adds: the cap and what bounds
// the run under it.
type AgentQuote struct {
	Question string `json:"question"`
	First    string `json:"first"` // the opening message, counted here and sent as is
	// Cap is the most the run may spend (the user's cap: or the default);
	// the hold is the lower of it and WorstCase, the most the step limit
	// lets the run cost.
	Cap       billing.Money `json:"cap"`
	WorstCase billing.Money `json:"worst_case"`
	MaxSteps  int           `json:"max_steps"`
	Parallel  int           `json:"parallel"`
	// WrapReserve is the final answer's worst case after the first step:
	// the part of the cap always kept for the answer (it grows with the
	// conversation).
	WrapReserve billing.Money `json:"wrap_reserve"`
	// AskAt is the ask-to-continue threshold in percent (0: off), Extra
	// what Continue would add, AskTimeout how long an ask waits.
	AskAt      int           `json:"ask_at"`
	Extra      billing.Money `json:"extra"`
	AskTimeout time.Duration `json:"ask_timeout"`
	// Typical steps and cost: from recent runs like this one when there are
	// enough (FromHistory), else an estimate.
	StepsLow    int           `json:"steps_low"`
	StepsHigh   int           `json:"steps_high"`
	TypicalLow  billing.Money `json:"typical_low"`
	TypicalHigh billing.Money `json:"typical_high"`
	FromHistory int           `json:"from_history,omitempty"`
	Tools       []string      `json:"tools"`
}

// agentStepsGuess is the stated estimate of an agent run's steps when no
// run like it has settled yet: planning, data, comparison, answer.
const agentStepsLow, agentStepsHigh = 3, 6

// priceAgent fills an agent quote: the opening message, the worst case of
// the whole step limit, the hold under the cap, the wrap-up reserve, the
// ask-to-continue threshold and the typical cost.
func (e *Engine) priceAgent(ctx context.Context, q *Quote, chain []llm.Route, in gathered) error {
	req := q.Request
	plan := DefaultAgentPlan
	own := []string{}
	if ws, err := e.Store.Watchlists(ctx, q.AccountID); err == nil {
		own = slices.Sorted(maps.Keys(ws))
	}
	lists := append(own, slices.Sorted(maps.Keys(market.Presets))...)
	cx := agentContext{Source: e.Market.Name(), Synthetic: e.Market.Synthetic(), Today: e.now().UTC().Format(time.DateOnly),
		Watchlists: lists, Benchmark: e.benchmarkFor(market.Equity), MaxSteps: plan.MaxSteps}
	switch req.Kind {
	case KindResearch:
		cx.Symbols = in.symbols
	case KindScan:
		cx.Watchlist = req.Watchlist
	}
	question := agentQuestion(req, in.symbols)
	first := firstMessage(question, cx)
	a := &AgentState{Question: question, First: first, Plan: plan}
	prompt := llm.CountRequestTokens(llm.Request{Messages: a.messages(first), Tools: llmTools()})
	prompt += promptMargin(prompt)

	var rates billing.Price
	for _, r := range chain {
		if r.Bucket() == q.Bucket {
			rates.InputPerM, rates.OutputPerM = max(rates.InputPerM, r.Price.InputPerM), max(rates.OutputPerM, r.Price.OutputPerM)
		}
	}
	aq := &AgentQuote{Question: question, First: first, Cap: req.Cap, MaxSteps: plan.MaxSteps, Parallel: plan.MaxParallel,
		AskTimeout: e.askTimeout(), Tools: strings.Split(toolNames(), ", ")}
	if aq.Cap == 0 {
		aq.Cap = DefaultAgentCap
	}
	aq.WorstCase = plan.worstRest(rates, prompt, 1)
	aq.WrapReserve = plan.wrapReserve(rates, prompt)
	smallest := billing.SaturatingAdd(rates.Cost(prompt, int64(plan.StepOutput)), aq.WrapReserve)
	if rates.InputPerM > 0 || rates.OutputPerM > 0 {
		if aq.Cap < smallest {
			return fmt.Errorf("%w: cap:%s is too low for this model: its first step and the answer need up to %s; try cap:%s",
				ErrBadRequest, aq.Cap.String(), smallest, ceilCent(smallest))
		}
	}
	q.Hold = min(aq.Cap, aq.WorstCase)
	if !req.AskOff {
		aq.AskAt = cmpOr(req.AskAt, DefaultAskAt)
		aq.Extra = ceilCent(max(q.Hold/2, smallest))
	}
	// Tokens and the static cost range: the whole step limit at its bounds.
	q.Calls = plan.MaxSteps
	p := prompt
	for k := 1; k < plan.MaxSteps; k++ {
		q.TokensIn += min(p, plan.MaxPrompt)
		p += plan.stepGrowth()
	}
	q.TokensIn += min(p, plan.MaxPrompt) + wrapTokens
	q.OutHigh = int64((plan.MaxSteps-1)*plan.StepOutput + plan.FinalOutput)
	q.OutLow = int64(plan.FinalOutput / 10)
	q.Intensity = intensity(q.TokensIn + q.OutHigh)
	// The estimate: a few steps whose tool results fill a third of their
	// bound and whose turns write a quarter of their limit.
	typical := func(steps int) billing.Money {
		var c billing.Money
		p := prompt
		for k := 1; k < steps; k++ {
			c = billing.SaturatingAdd(c, rates.Cost(p, int64(plan.StepOutput/4)))
			p += plan.stepGrowth() / 3
		}
		return billing.SaturatingAdd(c, rates.Cost(p, int64(plan.FinalOutput/2)))
	}
	aq.StepsLow, aq.StepsHigh = agentStepsLow, agentStepsHigh
	aq.TypicalLow, aq.TypicalHigh = min(typical(agentStepsLow), q.Hold), min(typical(agentStepsHigh), q.Hold)
	if os, ok := e.Store.(ObservationStore); ok {
		if obs, err := os.Observations(ctx, q.RouteID, Agent, len(in.symbols), calibrationWindow); err == nil && len(obs) >= calibrationMin {
			aq.FromHistory = len(obs)
			aq.StepsLow, aq.StepsHigh, aq.TypicalLow, aq.TypicalHigh = plan.MaxSteps, 0, billing.MaxMoney, 0
			for _, o := range obs {
				c := q.Price.Cost(o.UsedIn, o.UsedOut)
				aq.TypicalLow, aq.TypicalHigh = min(aq.TypicalLow, c), max(aq.TypicalHigh, c)
				if o.Steps > 0 {
					aq.StepsLow, aq.StepsHigh = min(aq.StepsLow, o.Steps), max(aq.StepsHigh, o.Steps)
				}
			}
			if aq.StepsHigh == 0 {
				aq.StepsLow, aq.StepsHigh = agentStepsLow, agentStepsHigh
			}
		}
	}
	q.CostLow, q.CostHigh = aq.TypicalLow, max(aq.TypicalHigh, aq.TypicalLow)
	q.Agent = aq
	q.Stages = nil
	return nil
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// agentPolicies writes an agent quote's cap, step and ask lines.
func (q *Quote) agentPolicies() {
	a := q.Agent
	held := fmt.Sprintf("the cap is %s", a.Cap)
	if q.Hold < a.Cap {
		held += fmt.Sprintf("; %s is held, the most its %d steps can cost", q.Hold, a.MaxSteps)
	} else {
		held += ", all of it held"
	}
	q.CapPolicy = held + fmt.Sprintf(". Every model call is reserved against what is left of the hold before it is made, "+
		"always keeping the final answer's worst case (%s at the first step, more as the conversation grows): at the cap the agent is told "+
		"to wrap up and answers from that reserve. You pay for what was used, never more than the hold and what you add with consent", a.WrapReserve)
	q.StepPolicy = fmt.Sprintf("at most %d steps (model calls, the answer included), up to %d tool calls each (%s); "+
		"the last step answers without tools, so a model that loops still answers. A model that answers no question at all is charged for its steps, and its tool figures are shown",
		a.MaxSteps, a.Parallel, strings.Join(a.Tools, ", "))
	if a.AskAt > 0 {
		q.AskPolicy = fmt.Sprintf("at %d%% of the cap (%s), if the rest of the steps could pass it, the run pauses and asks you: "+
			"Continue +%s (an additional hold in the same bucket, only with your press), Wrap up now, or Cancel; no answer within %s wraps up",
			a.AskAt, billing.Money(int64(q.Hold)*int64(a.AskAt)/100), a.Extra, roundRuntime(a.AskTimeout))
	} else {
		q.AskPolicy = "off (ask:off): at the cap the agent wraps up without asking"
	}
	if a.FromHistory > 0 {
		q.TypicalText = fmt.Sprintf("%d to %d steps, %s to %s (from %d recent runs like this one)", a.StepsLow, a.StepsHigh, a.TypicalLow, a.TypicalHigh, a.FromHistory)
	} else {
		q.TypicalText = fmt.Sprintf("about %d to %d steps, %s to %s (an estimate: no runs like this one yet)", a.StepsLow, a.StepsHigh, a.TypicalLow, a.TypicalHigh)
	}
	q.TimeoutPolicy = fmt.Sprintf("a run still going after %s stops: its answer is not written, the figures its tools returned are shown "+
		"and the steps used are charged; with no step done it costs nothing", roundRuntime(Plans[Agent].RuntimeHigh))
}

// newAgent is a confirmed agent quote's run state.
func (q Quote) newAgent() *AgentState {
	if q.Agent == nil {
		return nil
	}
	return &AgentState{Question: q.Agent.Question, First: q.Agent.First, Plan: DefaultAgentPlan, AskAt: q.Agent.AskAt}
}
