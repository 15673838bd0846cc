package research

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokensforge/forgebot/billing"
)

// Ask-to-continue: an agent run paused on a question to its owner (see
// agentAsk) goes on only by one of these answers. Continue adds the ask's
// Extra to the cap as an additional hold in the run's bucket, placed in
// the same transaction that records the answer and queues the run again;
// Wrap up queues it to write its answer now; Cancel is Engine.Cancel. No
// answer by the ask's deadline is a wrap-up (Reap).

// Continue answers an ask with Continue: the owner's press is the consent
// to the additional hold. ErrInsufficient when the bucket cannot cover it.
func (e *Engine) Continue(ctx context.Context, runID string, who billing.Identity) (Run, error) {
	r, err := e.asking(ctx, runID, who)
	if err != nil {
		return r, err
	}
	ask := *r.Agent.Ask
	plan := Plans[r.Request.Depth]
	hold := billing.HoldRequest{AccountID: r.AccountID, Bucket: r.Bucket, Amount: ask.Extra, TTL: e.holdTTL(plan),
		Key: fmt.Sprintf("run:%s:extend:%d", r.ID, len(r.Extensions)+1), Reference: "run:" + r.ID + ":extension",
		Actor: who.String(), DefaultLimits: e.SpendDefaults}
	r, err = e.Store.ContinueRun(ctx, runID, who.String(), "continue: "+ask.Extra.String()+" more held", &hold, plan.RuntimeHigh, e.holdTTL(plan),
		func(r *Run) error { return answerAsk(r, ask, AnswerContinue, who.String(), e) })
	switch {
	case errors.Is(err, billing.ErrInsufficientFunds):
		return r, fmt.Errorf("%w: your %s cannot cover %s more; Wrap up or Cancel", ErrInsufficient, r.Bucket, ask.Extra)
	case err != nil:
		return r, err
	}
	e.log().Info("agent run continued", "run_id", r.ID, "extra", ask.Extra.String(), "cap", r.Cap().String())
	e.publish(e.event(r, fmt.Sprintf("continuing: %s more held, the cap is now %s", ask.Extra, r.Cap())))
	return r, nil
}

// WrapUp answers an ask with Wrap up now: the run writes its answer.
func (e *Engine) WrapUp(ctx context.Context, runID string, who billing.Identity) (Run, error) {
	r, err := e.asking(ctx, runID, who)
	if err != nil {
		return r, err
	}
	return e.wrapUp(ctx, r, who.String(), "you asked to wrap up")
}

func (e *Engine) wrapUp(ctx context.Context, r Run, by, why string) (Run, error) {
	ask := *r.Agent.Ask
	plan := Plans[r.Request.Depth]
	r, err := e.Store.ContinueRun(ctx, r.ID, by, "wrap up: "+why, nil, plan.RuntimeHigh, e.holdTTL(plan), func(r *Run) error {
		if err := answerAsk(r, ask, AnswerWrapUp, by, e); err != nil {
			return err
		}
		r.Agent.WrapUp = why
		return nil
	})
	if err != nil {
		return r, err
	}
	e.publish(e.event(r, "wrapping up: "+why))
	return r, nil
}

// asking loads a run that is asking its owner, for who to answer.
func (e *Engine) asking(ctx context.Context, runID string, who billing.Identity) (Run, error) {
	r, err := e.Store.Run(ctx, runID)
	if err != nil {
		return r, err
	}
	if !e.maySpend(ctx, who, r.Owner, r.AccountID) {
		return r, ErrForbidden
	}
	if r.State != Paused || r.Agent == nil || r.Agent.Ask == nil {
		return r, fmt.Errorf("%w: the run is not asking (it is %s)", ErrWrongState, r.State)
	}
	return r, nil
}

// answerAsk records the answer to the ask the caller read; a run answered
// meanwhile (another press, another instance) is refused.
func answerAsk(r *Run, ask Ask, answer, by string, e *Engine) error {
	if r.Agent == nil || r.Agent.Ask == nil || !r.Agent.Ask.At.Equal(ask.At) {
		return fmt.Errorf("%w: the question was answered already", ErrWrongState)
	}
	a := *r.Agent.Ask
	a.Answer, a.By, a.When = answer, by, e.now()
	r.Agent.Asks = append(r.Agent.Asks, a)
	r.Agent.Ask = nil
	return nil
}

// reapAsks wraps up the runs whose ask went unanswered past its deadline.
func (e *Engine) reapAsks(ctx context.Context) (int, error) {
	runs, err := e.Store.StaleRuns(ctx, []State{Paused}, e.now().Add(-e.askTimeout()), 100)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range runs {
		if r.Agent == nil || r.Agent.Ask == nil || e.now().Before(r.Agent.Ask.Deadline) {
			continue
		}
		why := fmt.Sprintf("no answer within %s", roundRuntime(e.askTimeout()))
		if _, err := e.wrapUp(ctx, r, "timeout", why); err != nil {
			if !errors.Is(err, ErrWrongState) {
				e.log().Error("wrap up an unanswered run", "run_id", r.ID, "err", err)
			}
			continue
		}
		n++
	}
	return n, nil
}
