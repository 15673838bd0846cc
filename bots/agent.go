package bots

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// Agent runs in chat: /ask QUESTION [cap:0.50] [ask:off], and the agent
// depth of /research and /scan. The quote says the cap, the step limit, the
// wrap-up reserve and the ask-to-continue threshold; the progress card
// shows each step and the spend against the cap; at the threshold the card
// asks Continue +$X / Wrap up now / Cancel, and only the owner (or an
// admin) may press.

// agentOptions takes cap:AMOUNT and ask:off|ask:NN out of args. any
// reports whether one was given.
func agentOptions(args []string) (rest []string, cap billing.Money, askAt int, askOff, any bool, err error) {
	for _, a := range args {
		low := strings.ToLower(a)
		switch {
		case strings.HasPrefix(low, "cap:"):
			m, perr := billing.ParseMoney(strings.TrimPrefix(strings.TrimPrefix(a[4:], "$"), "$"))
			if perr != nil || m <= 0 {
				return nil, 0, 0, false, false, sayf("cap:%s is not an amount like cap:0.50", clip(a[4:], 16))
			}
			cap, any = m, true
		case strings.HasPrefix(low, "ask:"):
			v := strings.TrimSuffix(low[4:], "%")
			switch v {
			case "off", "no", "never":
				askOff, any = true, true
			case "on", "":
				any = true
			default:
				n, perr := strconv.Atoi(v)
				if perr != nil {
					return nil, 0, 0, false, false, sayf("ask:%s: use ask:off, or a percent of the cap like ask:80", clip(a[4:], 8))
				}
				askAt, any = n, true
			}
		default:
			rest = append(rest, a)
		}
	}
	return rest, cap, askAt, askOff, any, nil
}

// ask parses "/ask QUESTION [cap:0.50] [ask:off] [model:NAME]" and quotes it.
func (c *Conversation) ask(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	rest, cap, askAt, askOff, _, err := agentOptions(args)
	if err != nil {
		return nil, err
	}
	req := research.Request{Kind: research.KindAsk, Depth: research.Agent, Owner: in.Identity, Dest: dest(in),
		Cap: cap, AskAt: askAt, AskOff: askOff}
	var words []string
	for _, a := range rest {
		if name, ok := strings.CutPrefix(a, "model:"); ok {
			if c.Engine.Catalog.Route(name) == nil && !hasModel(c.Engine.Catalog, name) {
				return nil, sayf("Unknown model %q: see /models for the ones available.", clip(name, 64))
			}
			req.Model = name
			continue
		}
		words = append(words, a)
	}
	req.Question = strings.TrimSpace(strings.Join(words, " "))
	if req.Question == "" {
		return nil, sayf("Ask a question: /ask is NVDA overbought against the other semis? cap:0.50 (ask:off never asks to continue)")
	}
	return c.quote(ctx, req)
}

// agentTitle names what an agent run does.
func agentTitle(r research.Request, symbols []string) string {
	switch r.Kind {
	case research.KindAsk:
		return "Ask: " + clip(r.Question, 80)
	case research.KindScan:
		return "Agent scan of " + r.Watchlist
	}
	return "Agent research on " + strings.Join(symbols, ", ")
}

// agentQuoteView is an agent run's quote card.
func (c *Conversation) agentQuoteView(q research.Quote) View {
	a := q.Agent
	model := q.Model
	if q.Offline {
		model += " (rule-based offline agent, not an LLM)"
	}
	data := q.DataSource
	if q.Synthetic {
		data += " (SYNTHETIC demo data, not real prices)"
	}
	held := fmt.Sprintf("%s cap; %s held from your %s until the run settles", a.Cap, q.Hold, bucketName(q.Bucket))
	if q.Hold < a.Cap {
		held += fmt.Sprintf(" (the most its %d steps can cost)", a.MaxSteps)
	}
	title := "Quote: " + agentTitle(q.Request, q.Symbols)
	if q.Request.ScheduleID != "" {
		title = "Quote for schedule " + q.Request.ScheduleID + ": " + agentTitle(q.Request, q.Symbols)
	}
	v := View{Kind: KindQuote, Title: title, Private: true, Fields: []Field{
		{"Model", model},
		{"Route", fmt.Sprintf("%s (%s), API key %s", q.RouteID, q.RouteKind, q.KeyMasked)},
		{"Paid from", paidFrom(q)},
		{"Cap", held},
		{"Typical", q.TypicalText},
		{"Steps", q.StepPolicy},
		{"At the cap", q.CapPolicy},
		{"Ask to continue", q.AskPolicy},
		{"Market data", data},
		{"Retries", q.RetryPolicy},
		{"Fallback", q.FallbackPolicy},
		{"A failed request costs", q.FailedCost.String() + " (failed attempts are not charged; a run that fails costs nothing)"},
		{"Cancelling", q.CancelPolicy},
		{"If it runs out of time", q.TimeoutPolicy},
		{"Receipt", q.ReceiptWhere},
	}}
	if q.Spend != nil {
		v.Fields = append(v.Fields, Field{"Spend limits", spendText(*q.Spend)})
	}
	if !q.CanConfirm() {
		v.Text, v.Buttons = c.cannotConfirm(q)
		return withPublic(v, fmt.Sprintf("Your %s does not cover this run, or a limit stops it (it holds %s). The figures went to you privately.", bucketName(q.Bucket), q.Hold))
	}
	v.Text = fmt.Sprintf("Confirm to hold %s from your %s for an agent run of at most %d steps. The quote expires at %s UTC.",
		q.Hold, bucketName(q.Bucket), a.MaxSteps, q.ExpiresAt.UTC().Format("15:04"))
	v.Buttons = [][]Button{{{Label: "Confirm " + q.Hold.String(), Data: quoteButton(q.ID, "confirm"), Style: "primary"},
		{Label: "Cancel", Data: quoteButton(q.ID, "decline"), Style: "danger"}}}
	if q.Request.Kind != research.KindAsk {
		v.Buttons = append(v.Buttons, depthButtons(q))
	}
	return withPublic(v, v.Text)
}

// depthButtons offer the other depths of a research or scan quote (the
// agent depth included), and the other-bucket fallback choice.
func depthButtons(q research.Quote) []Button {
	var row []Button
	for _, d := range []research.Depth{research.Quick, research.Standard, research.Deep, research.Agent} {
		if d != q.Request.Depth {
			row = append(row, Button{Label: strings.ToUpper(string(d[:1])) + string(d[1:]), Data: quoteButton(q.ID, string(d)), Group: "depth"})
		}
	}
	if q.Request.Consent {
		row = append(row, Button{Label: "No other-bucket fallback", Data: quoteButton(q.ID, "noconsent")})
	} else if q.OtherBucketRoutes {
		row = append(row, Button{Label: "Allow other-bucket fallback", Data: quoteButton(q.ID, "consent")})
	}
	return row
}

// agentProgressView is an agent run's progress card: the step it is on,
// the spend against its cap as a bar, and its buttons; while it asks, the
// question and its three answers.
func (c *Conversation) agentProgressView(ev research.Event) View {
	r := ev.Run
	a := r.Agent
	v := View{Kind: KindProgress, Title: fmt.Sprintf("%s (agent): %s", titleOf(r), r.State)}
	cap := r.Cap()
	spent := ev.Cost
	pct := 0
	if cap > 0 {
		pct = int(min(100, int64(spent)*100/int64(cap)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "step %d of at most %d: %s\n%s %s of the %s cap", ev.Stage, ev.StageCount, ev.StageName, bar(pct), spent, cap)
	if len(r.Extensions) > 0 {
		fmt.Fprintf(&b, " (%d extension(s) you added)", len(r.Extensions))
	}
	if r.Failures > 0 {
		fmt.Fprintf(&b, "\n%d failed request(s) so far (retried; not charged)", r.Failures)
	}
	if ask := a.Ask; ask != nil && r.State == research.Paused {
		fmt.Fprintf(&b, "\nPaused to ask you: %s. Continue holds %s more from your %s; Wrap up now answers from what it has. No answer by %s UTC wraps up.",
			ask.Why, ask.Extra, bucketName(r.Bucket), ask.Deadline.UTC().Format("15:04"))
	} else if ev.Note != "" && !strings.HasPrefix(ev.Note, "step ") {
		fmt.Fprintf(&b, "\n%s", ev.Note)
	}
	v.Text = b.String()
	v.Fields = []Field{
		{"Tokens", fmt.Sprintf("%d in / %d out", ev.TokensIn, ev.TokensOut)},
		{"Cost so far", fmt.Sprintf("%s of %s cap from %s", append(fine(spent, cap), bucketName(r.Bucket))...)},
		{"Time", roundDur(ev.Elapsed) + " elapsed"},
	}
	switch {
	case r.State == research.Paused && a.Ask != nil:
		v.Buttons = [][]Button{{
			{Label: "Continue +" + a.Ask.Extra.String(), Data: runButton(r.ID, "more"), Style: "primary"},
			{Label: "Wrap up now", Data: runButton(r.ID, "wrapup")},
			{Label: "Cancel", Data: runButton(r.ID, "cancel"), Style: "danger"},
		}}
	case r.State == research.Paused || r.State == research.Pausing:
		v.Buttons = [][]Button{{{Label: "Resume", Data: runButton(r.ID, "resume"), Style: "primary"}, {Label: "Cancel", Data: runButton(r.ID, "cancel"), Style: "danger"}}}
	case r.State == research.Queued || r.State == research.Running:
		v.Buttons = [][]Button{{{Label: "Cancel", Data: runButton(r.ID, "cancel"), Style: "danger"}, {Label: "Pause", Data: runButton(r.ID, "pause")}}}
	}
	return v
}

// renderSteps lists an agent run's steps for a report or a receipt.
func renderSteps(steps []research.StepLine) string {
	var b strings.Builder
	for _, s := range steps {
		switch s.Kind {
		case research.StepModel:
			fmt.Fprintf(&b, "  %d. model: %s, %d in / %d out tokens, %s, %s\n", s.Step, s.Label, s.TokensIn, s.TokensOut, s.Cost, roundDur(s.Took))
		default:
			line := fmt.Sprintf("  %d. tool: %s, %s", s.Step, s.Label, shortDur(s.Took))
			if s.Error != "" {
				line += " (error: " + clip(s.Error, 120) + ")"
			}
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// shortDur prints a tool's time, which is often well under a second.
func shortDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return roundDur(d)
}
