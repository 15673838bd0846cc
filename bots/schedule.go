package bots

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/scheduler"
)

// schedule handles /schedule: add (cron or friendly), list, pause, resume,
// delete, run.
func (c *Conversation) schedule(ctx context.Context, in Incoming) ([]Reply, error) {
	if c.Schedules == nil {
		return nil, sayf("Schedules are not available here.")
	}
	words := scheduler.Tokenize(in.Text)[1:]
	if len(words) == 0 || words[0] == "list" {
		return c.scheduleList(ctx, in)
	}
	switch words[0] {
	case "pause", "resume", "delete", "run":
		if len(words) != 2 {
			return nil, sayf("Usage: /schedule %s ID (see /schedule list)", words[0])
		}
		id := words[1]
		if words[0] == "run" {
			q, err := c.Schedules.RunNow(ctx, id, in.Identity, dest(in))
			if err != nil {
				return nil, err
			}
			return []Reply{{View: c.quoteView(q)}}, nil
		}
		to := map[string]scheduler.Status{"pause": scheduler.Paused, "resume": scheduler.Active, "delete": scheduler.Deleted}[words[0]]
		sc, err := c.Schedules.SetStatus(ctx, id, in.Identity, to)
		if err != nil {
			return nil, err
		}
		return []Reply{{View: View{Kind: KindInfo, Text: fmt.Sprintf("Schedule %s (%s) is %s.", sc.ID, scheduler.Describe(sc), sc.Status)}}}, nil
	case "add":
		words = words[1:]
	}
	if err := c.allowQuote(in.Identity); err != nil {
		return nil, err
	}
	p, err := c.Schedules.Propose(ctx, in.Identity, words, dest(in))
	if err != nil {
		return nil, err
	}
	return []Reply{{View: c.scheduleQuoteView(p)}}, nil
}

func (c *Conversation) scheduleQuoteView(p scheduler.Proposal) View {
	sc, q := p.Schedule, p.Quote
	var next []string
	for _, t := range p.Next {
		next = append(next, t.In(zoneOf(sc.Zone)).Format("Mon 2006-01-02 15:04 MST"))
	}
	capText := "none"
	if sc.Cap > 0 {
		capText = sc.Cap.String() + " per run (a run quoted above it is skipped, with a notice)"
	}
	if q.Agent != nil {
		capText = fmt.Sprintf("%s per run: each agent run holds up to it and wraps up at it; %s", q.Agent.Cap, q.AskPolicy)
	}
	v := View{Kind: KindQuote, Private: true, Title: fmt.Sprintf("Schedule: %s %s", q.Request.Depth, scheduler.Describe(sc)),
		Text: fmt.Sprintf("Confirm to schedule. Each run is quoted and paid like any other, from your %s; nothing is held until a run starts.", bucketName(q.Bucket)),
		Fields: []Field{
			{"When", fmt.Sprintf("%s (%s)", sc.Spec, sc.Zone)},
			{"Next five", strings.Join(next, "\n")},
			{"Per run", fmt.Sprintf("%s to %s, paid from %s (%s available now)", append(alike(q.CostLow, q.CostHigh), bucketName(q.Bucket), q.Available)...)},
			{"Per month", fmt.Sprintf("%d runs: %s to %s", p.PerMonth, p.MonthLow, p.MonthHigh)},
			{"Cost cap", capText},
			{"Policies", schedulePolicies(c.Schedules.Policy())},
		},
		Buttons: [][]Button{{{Label: "Confirm schedule", Data: scheduleButton(sc.ID, "confirm"), Style: "primary"}, {Label: "Cancel", Data: scheduleButton(sc.ID, "decline"), Style: "danger"}}},
	}
	return withPublic(v, v.Text)
}

// schedulePolicies is shown with every schedule quote and list, built from
// the scheduler's settings so it says what the service really does.
func schedulePolicies(p scheduler.Policy) string {
	return strings.Join([]string{
		"- Overlap: a time whose previous run is still going is skipped (and recorded).",
		fmt.Sprintf("- Catch-up: after downtime, the latest missed time runs once if it is at most %s late; the others are recorded as missed.", humanDuration(p.CatchUp)),
		"- Balance: too little balance skips the run, with a notice here.",
		"- Cost cap (cap:AMOUNT): a run whose quote holds more than the cap is skipped, with a notice here.",
		"- Pause and resume: a paused schedule does not run; resuming goes on from the next time, and times due while paused are dropped, not replayed.",
		"- Failure: a run that cannot be quoted (market data down, say) is retried briefly, then recorded as failed, with a notice here.",
		"- DST: a time that does not exist (spring forward) is skipped that day; a repeated time (fall back) fires once.",
		fmt.Sprintf("- Limits: at least %s between runs; up to %d schedules per account.", humanDuration(p.MinInterval), p.MaxPerAccount),
	}, "\n")
}

// humanDuration writes 90m as "1 h 30 min".
func humanDuration(d time.Duration) string {
	var parts []string
	if h := d / time.Hour; h > 0 {
		parts = append(parts, fmt.Sprintf("%d h", h))
	}
	if m := d % time.Hour / time.Minute; m > 0 {
		parts = append(parts, fmt.Sprintf("%d min", m))
	}
	if sec := d % time.Minute / time.Second; sec > 0 || len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%d s", sec))
	}
	return strings.Join(parts, " ")
}

func (c *Conversation) pressSchedule(ctx context.Context, in Incoming, p payload) ([]Reply, error) {
	switch p.action {
	case "confirm":
		sc, err := c.Schedules.Confirm(ctx, p.id, in.Identity)
		if err != nil {
			return nil, err
		}
		return []Reply{{Edit: true, View: View{Kind: KindInfo, Final: true, Text: fmt.Sprintf("Scheduled %s (%s %s), id %s. Next run %s. Manage it with /schedule list.",
			scheduler.Describe(sc), sc.Spec, sc.Zone, sc.ID, sc.NextRunAt.In(zoneOf(sc.Zone)).Format("Mon 2006-01-02 15:04 MST"))}}}, nil
	default:
		if _, err := c.Schedules.SetStatus(ctx, p.id, in.Identity, scheduler.Deleted); err != nil {
			return nil, err
		}
		return []Reply{{Edit: true, View: View{Kind: KindInfo, Final: true, Text: "No schedule made."}}}, nil
	}
}

func (c *Conversation) scheduleList(ctx context.Context, in Incoming) ([]Reply, error) {
	list, fires, err := c.Schedules.List(ctx, in.Identity)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return []Reply{{View: View{Kind: KindInfo, Text: "No schedules. Try /schedule daily 09:00 scan us-megacaps"}}}, nil
	}
	var b strings.Builder
	for _, sc := range list {
		next := "next " + sc.NextRunAt.In(zoneOf(sc.Zone)).Format("Mon 01-02 15:04 MST")
		if sc.Status == scheduler.Paused {
			next = "no next run while paused (/schedule resume " + sc.ID + ")"
		}
		fmt.Fprintf(&b, "%s  %s: %s (%s %s), %s", sc.ID, sc.Status, scheduler.Describe(sc), sc.Spec, sc.Zone, next)
		if sc.Cap > 0 {
			fmt.Fprintf(&b, ", cap %s", sc.Cap)
		}
		for _, f := range fires[sc.ID] {
			fmt.Fprintf(&b, "\n    %s: %s", f.At.In(zoneOf(sc.Zone)).Format("01-02 15:04"), f.Outcome)
			if f.RunID != "" {
				fmt.Fprintf(&b, " (run %s)", f.RunID)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\nPolicies:\n" + schedulePolicies(c.Schedules.Policy()))
	return []Reply{{View: View{Kind: KindInfo, Title: "Your schedules", Text: b.String(), Private: true}}}, nil
}
