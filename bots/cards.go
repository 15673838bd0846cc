package bots

import (
	"fmt"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// quoteView is the quote card: everything a user needs before money is held.
func (c *Conversation) quoteView(q research.Quote) View {
	if q.Agent != nil {
		return c.agentQuoteView(q)
	}
	what := strings.Join(q.Symbols, ", ")
	if q.Request.Kind == research.KindScan {
		what = "scan of " + q.Request.Watchlist + ": " + what
	}
	model := q.Model
	if q.Offline {
		model += " (rule-based offline analyst, not an LLM)"
	}
	data := q.DataSource
	if q.Synthetic {
		data += " (SYNTHETIC demo data, not real prices)"
	}
	title := fmt.Sprintf("Quote: %s research on %s", q.Request.Depth, what)
	if q.Request.ScheduleID != "" {
		title = fmt.Sprintf("Quote for schedule %s: %s research on %s", q.Request.ScheduleID, q.Request.Depth, what)
	}
	v := View{Kind: KindQuote, Title: title, Private: true, Fields: []Field{
		{"Model", model},
		{"Route", fmt.Sprintf("%s (%s), API key %s", q.RouteID, q.RouteKind, q.KeyMasked)},
		{"Paid from", paidFrom(q)},
		{"Estimated tokens", estimatedTokens(q)},
		{"Estimated cost", fmt.Sprintf("%s to %s (%s held until the run settles: the most it can cost)", alike(q.CostLow, q.CostHigh, q.Hold)...)},
		{"Expected runtime", runtimeText(q)},
		{"Plan", planText(q)},
		{"Market data", data},
		{"Retries", q.RetryPolicy},
		{"Fallback", q.FallbackPolicy},
		{"A failed request costs", q.FailedCost.String() + " (failed attempts are not charged; a run that fails costs nothing)"},
		{"Cancelling", q.CancelPolicy},
		{"At the cap", q.CapPolicy},
		{"If it runs out of time", q.TimeoutPolicy},
		{"Receipt", q.ReceiptWhere},
	}}
	if len(q.SymbolNotes) > 0 {
		v.Fields = append(v.Fields, Field{"Signals", strings.Join(q.SymbolNotes, "\n")})
	}
	if q.Spend != nil {
		v.Fields = append(v.Fields, Field{"Spend limits", spendText(*q.Spend)})
	}
	if !q.CanConfirm() {
		v.Text, v.Buttons = c.cannotConfirm(q)
		return withPublic(v, fmt.Sprintf("Your %s does not cover this run, or a limit stops it (it holds up to %s). The figures went to you privately.", bucketName(q.Bucket), q.Hold))
	}
	v.Text = fmt.Sprintf("Confirm to hold %s from your %s. The quote expires at %s UTC.", q.Hold, bucketName(q.Bucket), q.ExpiresAt.UTC().Format("15:04"))
	v.Buttons = [][]Button{
		{{Label: "Confirm " + q.Hold.String(), Data: quoteButton(q.ID, "confirm"), Style: "primary"}, {Label: "Cancel", Data: quoteButton(q.ID, "decline"), Style: "danger"}},
	}
	// The fallback choice only where a route of the other bucket serves the model.
	v.Buttons = append(v.Buttons, depthButtons(q))
	return withPublic(v, v.Text)
}

// withPublic sets the view a group sees: every field that names a balance
// loses its figures (the field keeps the bucket's name), and text replaces
// the text. This run's own cost and hold stay: they are the run's, not the
// wallet's.
func withPublic(v View, text string) View {
	pub := v
	pub.Text, pub.Private, pub.Public = text, false, nil
	pub.Fields = make([]Field, 0, len(v.Fields))
	for _, f := range v.Fields {
		switch f.Name {
		case "Paid from":
			f.Value = strings.SplitN(f.Value, ":", 2)[0] + " (the balance went to you privately)"
		case "Per run":
			f.Value, _, _ = strings.Cut(f.Value, " (")
		case "Spend limits":
			continue // what was spent today and this month: the owner's only
		}
		pub.Fields = append(pub.Fields, f)
	}
	v.Public = &pub
	return v
}

// estimatedTokens is the quote's token estimate: calibrated on recent runs
// like it when there are enough, else counted from the prompts.
func estimatedTokens(q research.Quote) string {
	if q.Samples > 0 {
		return fmt.Sprintf("%d to %d in, %d to %d out over %d call(s), from %d recent runs like this one (up to %d out at most): %s",
			q.InLow, q.InHigh, q.OutLow, q.OutEst, q.Calls, q.Samples, q.OutHigh, q.Intensity)
	}
	return fmt.Sprintf("%d in, %d to %d out over %d call(s): %s", q.TokensIn, q.OutLow, q.OutHigh, q.Calls, q.Intensity)
}

// paidFrom names the paying bucket, and the other bucket's hold when a
// consented fallback would be paid from it.
func paidFrom(q research.Quote) string {
	s := fmt.Sprintf("%s: %s available, %s left after the hold", bucketName(q.Bucket), q.Available, max(q.AfterHold, 0))
	if q.FallbackHold > 0 {
		s += fmt.Sprintf("; other-bucket fallback: up to %s also held from your %s (%s available), released unless used",
			q.FallbackHold, bucketName(q.FallbackBucket), q.FallbackAvailable)
	}
	return s
}

// planText is the depth's plan as the quote shows it: the data window, the
// stages and the output limit per model call.
func planText(q research.Quote) string {
	p := research.Plans[q.Request.Depth]
	window := fmt.Sprintf("%d months", int(p.Window.Hours()/24/30.4+0.5))
	switch years := int(p.Window.Hours()/24/365 + 0.5); {
	case p.Window < 365*24*time.Hour:
	case years == 1:
		window = "1 year"
	default:
		window = fmt.Sprintf("%d years", years)
	}
	names := make([]string, len(q.Stages))
	for i, st := range q.Stages {
		names[i] = st.Name
	}
	return fmt.Sprintf("%s of daily data (plus the history SMA 200 needs); %d stage(s): %s; up to %d output tokens per model call",
		window, len(q.Stages), strings.Join(names, ", "), p.OutputLimit)
}

// fine formats a growing figure and its bound with all six decimals, as fmt
// arguments: a card's cost so far keeps one precision from its first update.
func fine(ms ...billing.Money) []any {
	var out []any
	for _, s := range billing.Fine(ms...) {
		out = append(out, s)
	}
	return out
}

// alike formats amounts shown together with the same precision, as fmt arguments.
func alike(ms ...billing.Money) []any {
	var out []any
	for _, s := range billing.Alike(ms...) {
		out = append(out, s)
	}
	return out
}

func bucketName(b billing.Bucket) string {
	switch string(b) {
	case "credit":
		return "Credit"
	case "routed":
		return "routed balance"
	}
	return string(b)
}

func roundDur(d time.Duration) string {
	if d < time.Second {
		return "under 1s"
	}
	return d.Round(time.Second).String()
}

// bar draws a 10-cell progress bar.
func bar(percent int) string {
	n := max(0, min(10, percent/10))
	return "[" + strings.Repeat("█", n) + strings.Repeat("░", 10-n) + "]"
}

// progressView is the card a running run's message shows.
func (c *Conversation) progressView(ev research.Event) View {
	if ev.Run.Agent != nil {
		return c.agentProgressView(ev)
	}
	r := ev.Run
	state := string(r.State)
	if ev.Queued != nil && r.State == research.Running {
		state = "queued" // waiting in line for the route's capacity
	}
	v := View{Kind: KindProgress, Title: fmt.Sprintf("%s (%s): %s", titleOf(r), r.Request.Depth, state)}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d%%  stage %d/%d: %s", bar(ev.Percent), ev.Percent, ev.Stage, ev.StageCount, ev.StageName)
	if r.Failures > 0 {
		fmt.Fprintf(&b, "\n%d failed request(s) so far (retried; not charged)", r.Failures)
	}
	for sym, why := range r.SymbolErrors {
		fmt.Fprintf(&b, "\n%s failed: %s", sym, why)
	}
	if ev.Note != "" {
		fmt.Fprintf(&b, "\n%s", ev.Note)
	}
	elapsed := roundDur(ev.Elapsed) + " elapsed"
	if ev.Remaining >= time.Second && r.State == research.Running { // a paused run has no time left to count
		elapsed += ", about " + roundDur(ev.Remaining) + " left"
	}
	v.Fields = []Field{
		{"Tokens", fmt.Sprintf("%d in / %d out", ev.TokensIn, ev.TokensOut)},
		{"Cost so far", fmt.Sprintf("%s of %s held from %s", append(fine(ev.Cost, r.Hold), bucketName(r.Bucket))...)},
		{"Time", elapsed},
	}
	v.Text = b.String()
	switch r.State {
	case research.Paused, research.Pausing: // Resume also withdraws a pause not yet taken
		v.Buttons = [][]Button{{{Label: "Resume", Data: runButton(r.ID, "resume"), Style: "primary"}, {Label: "Cancel", Data: runButton(r.ID, "cancel"), Style: "danger"}}}
	case research.Queued, research.Running:
		v.Buttons = [][]Button{{{Label: "Cancel", Data: runButton(r.ID, "cancel"), Style: "danger"}, {Label: "Pause", Data: runButton(r.ID, "pause")}}}
		if ev.Queued != nil {
			// In line for the route: Cancel frees the place at once; a pause
			// would only take effect after the call, so it is not offered.
			v.Buttons = [][]Button{{{Label: "Cancel", Data: runButton(r.ID, "cancel"), Style: "danger"}}}
		}
	}
	return v
}

// runtimeText is a quote's runtime range, with the wait for the route's
// capacity it includes when calls are queued on the route.
func runtimeText(q research.Quote) string {
	t := fmt.Sprintf("%s to %s", roundDur(q.RuntimeLow), roundDur(q.RuntimeHigh))
	if q.QueueWait > 0 {
		t += fmt.Sprintf(" (including about %s waiting for the route: calls are queued at its rate limits)", roundDur(q.QueueWait))
	}
	return t
}

func titleOf(r research.Run) string {
	t := "Research " + strings.Join(r.Symbols, ", ")
	switch {
	case r.Agent != nil:
		t = agentTitle(r.Request, r.Symbols)
	case r.Request.Kind == research.KindScan:
		t = "Scan " + r.Request.Watchlist + ": " + strings.Join(r.Symbols, ", ")
	}
	if r.Request.ScheduleID != "" {
		t = "Scheduled (" + r.Request.ScheduleID + ") " + strings.ToLower(t[:1]) + t[1:]
	}
	return t
}

// finalView is the last state of a run's message: the report, the chart,
// the charge and its ledger entry, the receipt link and the notice.
func (c *Conversation) finalView(ev research.Event, captureEntry int64) View {
	r := ev.Run
	v := View{Kind: KindFinal, Final: true, Title: fmt.Sprintf("%s: %s", titleOf(r), r.State), Report: ev.Report, Notice: research.Notice}
	var b strings.Builder
	if ev.Report != nil {
		b.WriteString(RenderReport(*ev.Report))
	} else if r.Error != "" {
		b.WriteString(r.Error + "\n")
	}
	m := billing.Alike(r.Captured, r.Cap()-r.Captured)
	charge := fmt.Sprintf("Charged %s from your %s", m[0], bucketName(r.Bucket))
	if captureEntry != 0 {
		charge += fmt.Sprintf(" (ledger entry %d)", captureEntry)
	}
	charge += fmt.Sprintf("; %s released. %d tokens in, %d out (%s count).", m[1], r.TokensIn, r.TokensOut, orProvider(string(r.OutSource)))
	if r.Agent != nil {
		charge += fmt.Sprintf(" %d model call(s), %d tool call(s); the receipt lists every step.", r.Agent.ModelSteps(), r.Agent.ToolCalls())
		if len(r.Extensions) > 0 {
			charge += fmt.Sprintf(" The cap was %s, with %s you added.", r.Cap(), r.Cap()-r.Hold)
		}
	}
	v.Fields = []Field{{"Cost", charge}}
	if r.FallbackHoldID != 0 {
		text := fmt.Sprintf("no other-bucket route was needed; the %s held from your %s was released", r.FallbackHold, bucketName(r.FallbackBucket))
		if r.CrossBucket || r.FallbackCaptured > 0 {
			text = fmt.Sprintf("answered by a route of the other bucket, as you allowed: charged %s from your %s; %s released",
				r.FallbackCaptured, bucketName(r.FallbackBucket), r.FallbackHold-r.FallbackCaptured)
		}
		if r.FallbackReceiptID != "" {
			text += " (receipt " + r.FallbackReceiptID + ")"
		}
		v.Fields = append(v.Fields, Field{"Fallback", text})
	}
	v.Text = strings.TrimSpace(b.String())
	if ev.Chart != nil {
		v.Image, v.ImageName = ev.Chart, "chart-"+r.ID+".png"
	}
	if ev.Report != nil && ev.Report.CSV {
		v.File, v.FileName = research.ScanCSV(ev.Report.Scan), "scan-"+r.ID+".csv"
	}
	if ev.ReceiptURL != "" {
		v.Buttons = [][]Button{{{Label: "Receipt", URL: ev.ReceiptURL}}}
	}
	return v
}

func orProvider(s string) string {
	if s == "" || s == "provider" {
		return "provider"
	}
	return "local estimate"
}

// ReportPart is one whole-run part of a report under its heading.
type ReportPart struct{ Name, Text string }

// ReportParts lists a report's whole-run parts in reading order: a quick run's analysis, then a deeper run's
// bull and bear cases, risks and synthesis.
func ReportParts(rep research.Report) []ReportPart {
	if rep.Question != "" {
		return []ReportPart{{"Steps", strings.TrimRight(renderSteps(rep.Steps), "\n")}}
	}
	return []ReportPart{{"Analysis", rep.Overview}, {"Bull case", rep.Bull}, {"Bear case", rep.Bear}, {"Risks", rep.Risks}, {"Synthesis", rep.Synthesis}}
}

// AgentParts are an agent report's question and answer, shown before the
// figures its tools returned (nil for other reports).
func AgentParts(rep research.Report) []ReportPart {
	if rep.Question == "" {
		return nil
	}
	return []ReportPart{{"Question", rep.Question}, {"Answer", rep.Overview}}
}

// PhoneColumns is how many fixed-width characters a phone's chat client shows on a line before it wraps
// (Telegram's and Discord's in portrait, about 40): a scan's table wider than that goes as a picture there
// (research.ScanImage), since a wrapped table loses its columns.
const PhoneColumns = 40

// ScanBlock is a report's ranked watchlist as RenderReport writes it: the fixed-width table, or, with
// asImage, the brief that goes with the table's picture ("" when the report is not a scan).
func ScanBlock(rep research.Report, asImage bool) string {
	if len(rep.Scan) == 0 {
		return ""
	}
	body := research.ScanText(rep.Scan)
	if asImage {
		body = research.ScanBrief(rep.Scan)
	}
	return fmt.Sprintf("\nRanked watchlist (%d symbols)\n%s\n", len(rep.Scan), body)
}

// ScanImage is the picture of a final view's scan table for a phone's chat client, when the table does not
// fit there as text (PhoneColumns); nil when it fits, the view has no scan, or drawing failed.
func ScanImage(v View) []byte {
	if !v.Final || v.Report == nil || len(v.Report.Scan) == 0 || research.ScanFitsText(v.Report.Scan, PhoneColumns) {
		return nil
	}
	b, err := research.ScanImage(*v.Report)
	if err != nil {
		return nil // the fixed-width table stands in
	}
	return b
}

// RenderReport writes a report as plain text; adapters split or attach it.
func RenderReport(rep research.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nData: %s %s", rep.Title, rep.DataSource, rep.AsOfText())
	if rep.Synthetic {
		b.WriteString(" (SYNTHETIC demo data, not real prices)")
	}
	if rep.RuleBased {
		b.WriteString("; written by the rule-based offline analyst")
	} else {
		b.WriteString("; model " + rep.Model)
	}
	b.WriteString("\n")
	for _, part := range AgentParts(rep) {
		switch {
		case part.Name == "Question":
			fmt.Fprintf(&b, "\nQuestion: %s\n", part.Text)
		case part.Text != "":
			fmt.Fprintf(&b, "\n%s\n%s\n", part.Name, part.Text)
		}
	}
	b.WriteString(ScanBlock(rep, false))
	for _, s := range rep.Sections {
		fmt.Fprintf(&b, "\n%s\n", s.Symbol)
		if s.Context != "" {
			fmt.Fprintf(&b, "  %s\n", s.Context)
		}
		for _, w := range s.Warnings {
			fmt.Fprintf(&b, "  WARNING: %s\n", w)
		}
		for _, f := range s.Figures {
			fmt.Fprintf(&b, "  %s: %s\n", f.Label, f.Value)
		}
		if s.Text != "" {
			fmt.Fprintf(&b, "%s\n", s.Text)
		}
	}
	for _, part := range ReportParts(rep) {
		if part.Text != "" {
			fmt.Fprintf(&b, "\n%s\n%s\n", part.Name, part.Text)
		}
	}
	for sym, why := range rep.Failed {
		fmt.Fprintf(&b, "\n%s could not be analysed: %s", sym, why)
	}
	if rep.Missing != "" {
		fmt.Fprintf(&b, "\nNot written (and not charged): %s", rep.Missing)
	}
	fmt.Fprintf(&b, "\n\n%s", rep.Notice)
	return b.String()
}

func zoneOf(name string) *time.Location {
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	return time.UTC
}
