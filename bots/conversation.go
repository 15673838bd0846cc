package bots

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/market"
	"github.com/tokensforge/forgebot/scheduler"
)

// Ledger is what the conversation reads of billing.
type Ledger interface {
	EnsureAccount(ctx context.Context, id billing.Identity) (billing.AccountID, error)
	AccountOf(ctx context.Context, id billing.Identity) (billing.AccountID, error)
	Balances(ctx context.Context, id billing.AccountID) (billing.Balances, error)
	Entries(ctx context.Context, id billing.AccountID, limit int) ([]billing.Entry, error)
	Receipt(ctx context.Context, publicID string) (billing.Receipt, error)
	CreateLinkCode(ctx context.Context, owner billing.Identity, code string, ttl time.Duration, max int) error
	RedeemLinkCode(ctx context.Context, code string, who billing.Identity, maxPerHour int) (billing.AccountID, error)
}

// Conversation is the chat flow every platform shares.
type Conversation struct {
	Engine *research.Engine
	Ledger Ledger
	Runs   research.Store
	Outbox *Outbox
	// Schedules makes and lists recurring runs; nil turns /schedule off.
	Schedules *scheduler.Service
	// TopUpHint tells a user how to add money (shown with a shortfall).
	TopUpHint string
	// Pay turns on money in from chat (/topup, grants, refunds, limits); nil: off.
	Pay *Pay
	Log *slog.Logger
	// Limits bound what one user may ask for (quotes a minute, runs at once).
	Limits UserLimits

	quotes quoteLimiter
}

// Commands lists the commands with a one-line description each, for /help and
// for platforms that publish a command list.
var Commands = []struct{ Name, Args, Help string }{
	{"research", "SYMBOLS [quick|standard|deep|agent] [model]", fmt.Sprintf("quote and run research: up to %d symbols quick, %d standard, %d deep",
		research.Plans[research.Quick].MaxSymbols, research.Plans[research.Standard].MaxSymbols, research.Plans[research.Deep].MaxSymbols)},
	{"scan", "WATCHLIST [quick|standard|deep|agent] [csv]", "rank a watchlist in a table by signals and write up the top ones"},
	{"ask", "QUESTION [cap:0.50] [ask:off]", "an agent run: the model answers with market tools, step by step, under the cap you set"},
	{"watchlist", "add|remove|show [NAME] [SYMBOLS]", "your watchlists for /scan (presets too)"},
	{"balance", "", "your Credit and routed balances"},
	{"topup", "[credit|routed] [AMOUNT]", "add money: Telegram Stars, or a Stripe Checkout link"},
	{"limit", "daily AMOUNT | monthly AMOUNT | off", "cap what you spend per day or month"},
	{"usage", "", "your recent runs and what they cost"},
	{"receipt", "ID", "show a receipt (its id or link, or a run id from /usage)"},
	{"models", "", "models, routes, prices and route health"},
	{"cancel", "[RUN]", "cancel your running research"},
	{"link", "[CODE]", "join this chat account to your account on another platform"},
	{"schedule", "daily|weekdays HH:MM research SYMBOLS | scan LIST | ask \"QUESTION\" [depth] [tz:Zone] [cap:1.00]", "recurring runs; also add \"CRON\" ..., list, pause|resume|delete|run ID"},
	{"grant", "platform:id AMOUNT credit|routed NOTE", "admins: give money, audited"},
	{"refund", "CHARGE_ID", "admins: refund a payment and reverse its credit"},
	{"help", "", "this list"},
}

func (c *Conversation) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Handle answers one incoming command or button press. It never returns an
// internal error's text to the user: those are logged with a reference.
func (c *Conversation) Handle(ctx context.Context, in Incoming) []Reply {
	var replies []Reply
	var err error
	if in.Admin {
		ctx = research.WithAdmin(ctx)
	}
	var welcome string
	if in.Button != "" {
		replies, err = c.press(ctx, in)
	} else {
		welcome = c.welcome(ctx, in)
		replies, err = c.command(ctx, in)
	}
	if err != nil {
		replies = []Reply{c.errorReply(err, in.Button != "")}
	}
	return withWelcome(welcome, replies)
}

// errorReply maps domain errors to words and hides the rest behind a reference.
func (c *Conversation) errorReply(err error, alert bool) Reply {
	msg := ""
	var user *userError
	switch {
	case errors.As(err, &user):
		msg = user.msg
	case errors.Is(err, research.ErrBadRequest), errors.Is(err, research.ErrNoRoute):
		msg = strings.TrimPrefix(err.Error(), research.ErrBadRequest.Error()+": ")
	case errors.Is(err, research.ErrDataUnavailable):
		// Only the failure's class and reference: the provider's text and
		// URL stay in the log.
		why := "market data is unavailable"
		var pe *research.PublicError
		if errors.As(err, &pe) {
			why = pe.Error()
		}
		msg = "Market data is unavailable right now (" + why + "). Nothing was held or charged; try again in a few minutes."
	case errors.Is(err, research.ErrInsufficient):
		msg = "Not enough balance: " + strings.TrimPrefix(err.Error(), research.ErrInsufficient.Error()+": ") + "."
	case errors.Is(err, research.ErrForbidden):
		msg = "Only the person who started this (or an admin) can do that."
	case errors.Is(err, research.ErrWrongState):
		// One clause, not the chain of wrapped errors.
		why := strings.TrimPrefix(err.Error(), research.ErrWrongState.Error()+": ")
		if why == err.Error() {
			why = "the run is not in a state that allows it"
		}
		msg = "That is no longer possible: " + why + "."
	case errors.Is(err, research.ErrNotFound), errors.Is(err, billing.ErrNotFound):
		msg = "Not found (it may have expired)."
	case errors.Is(err, scheduler.ErrBadSpec):
		msg = strings.TrimPrefix(err.Error(), scheduler.ErrBadSpec.Error()+": ")
	case errors.Is(err, billing.ErrRateLimited):
		msg = "Too many attempts: try again in an hour."
	case errors.Is(err, billing.ErrLinkConflict):
		msg = "Cannot link: " + strings.TrimPrefix(err.Error(), billing.ErrLinkConflict.Error()+": ")
	case errors.Is(err, billing.ErrSpendLimit):
		var le *billing.LimitError
		errors.As(err, &le)
		msg = fmt.Sprintf("This run would pass your %s spend limit: %s spent of %s, and it holds up to %s. Nothing was held. Change it with /limit.",
			le.Period, le.Spent, le.Limit, le.Amount)
	case errors.Is(err, research.ErrTooManyRuns):
		msg = "You have as many runs going as you may at once: wait for one to finish, or cancel one with /cancel. Nothing was held."
		if le := (*research.RunLimitError)(nil); errors.As(err, &le) {
			msg = fmt.Sprintf("You have %d runs going, the most at once: wait for one to finish, or cancel one with /cancel. Nothing was held.", le.Live)
		}
	case errors.Is(err, billing.ErrInDebt):
		msg = "You owe money after a refund: top up with /topup to pay it, then runs start again. Nothing was held."
	default:
		ref := newRef()
		c.log().Error("conversation failed", "ref", ref, "err", err)
		msg = "Something went wrong (ref " + ref + "). Nothing was charged for it."
	}
	if alert {
		return Reply{Alert: msg, Refused: true}
	}
	return Reply{View: View{Kind: KindError, Text: msg, Private: true}}
}

// clip cuts what a user typed to n characters before it is echoed back.
func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

type userError struct{ msg string }

func (e *userError) Error() string { return e.msg }

func sayf(format string, args ...any) error { return &userError{fmt.Sprintf(format, args...)} }

func newRef() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// parseCommand splits "/research@botname NVDA quick" into "research" and its arguments.
func parseCommand(text string) (string, []string, bool) {
	f := strings.Fields(text)
	if len(f) == 0 || !strings.HasPrefix(f[0], "/") {
		return "", nil, false
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(f[0], "/"), "@")
	return strings.ToLower(name), f[1:], true
}

func (c *Conversation) command(ctx context.Context, in Incoming) ([]Reply, error) {
	name, args, ok := parseCommand(in.Text)
	if !ok {
		return nil, sayf("Commands start with /. Try /help.")
	}
	switch name {
	case "start", "help":
		return []Reply{{View: helpView()}}, nil
	case "research":
		return c.research(ctx, in, args)
	case "scan":
		return c.scan(ctx, in, args)
	case "ask":
		return c.ask(ctx, in, args)
	case "balance":
		return c.balance(ctx, in)
	case "topup":
		return c.topupCommand(ctx, in, args)
	case "limit":
		return c.limit(ctx, in, args)
	case "grant":
		return c.grant(ctx, in, args)
	case "refund":
		return c.refund(ctx, in, args)
	case "usage":
		return c.usage(ctx, in)
	case "receipt":
		return c.receipt(ctx, in, args)
	case "models":
		return []Reply{{View: c.modelsView()}}, nil
	case "cancel":
		return c.cancelCommand(ctx, in, args)
	case "link":
		return c.link(ctx, in, args)
	case "watchlist":
		return c.watchlist(ctx, in, args)
	case "schedule":
		return c.schedule(ctx, in)
	}
	return nil, sayf("Unknown command /%s. Try /help.", clip(name, 32))
}

func helpView() View {
	var b strings.Builder
	b.WriteString("forgebot runs paid LLM research on market data. You always see a quote first.\n\n")
	for _, cmd := range Commands {
		fmt.Fprintf(&b, "/%s %s: %s\n", cmd.Name, cmd.Args, cmd.Help)
	}
	b.WriteString("\n" + research.Notice)
	return View{Kind: KindInfo, Title: "forgebot", Text: b.String()}
}

// research parses "/research SYMBOLS [depth] [model]" and answers with a quote.
func (c *Conversation) research(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	req := research.Request{Kind: research.KindResearch, Depth: research.Quick, Owner: in.Identity, Dest: dest(in)}
	args, cap, askAt, askOff, agentOpts, err := agentOptions(args)
	if err != nil {
		return nil, err
	}
	depthGiven := false
	for _, a := range args {
		if d, err := research.ParseDepth(a); err == nil {
			req.Depth, depthGiven = d, true
			continue
		}
		name, explicit := strings.CutPrefix(a, "model:")
		known := c.Engine.Catalog.Route(name) != nil || hasModel(c.Engine.Catalog, name)
		switch {
		case known:
			req.Model = name
		case !explicit && looksLikeDepth(a):
			// A depth typo is never taken for a ticker: "ultra" must not
			// quote research on a symbol called ULTRA.
			return nil, sayf("Unknown depth %q: use quick, standard or deep. (For a symbol of that name, type it in capitals: %s.)", clip(a, 32), strings.ToUpper(clip(a, 32)))
		case explicit || looksLikeModel(a):
			// A model name is never taken for a ticker: a typo must not
			// quote research on a symbol called GPT-4O.
			return nil, sayf("Unknown model %q: see /models for the ones available.", clip(name, 64))
		default:
			req.Symbols = append(req.Symbols, splitSymbols([]string{a})...)
		}
	}
	if len(req.Symbols) == 0 {
		return nil, sayf("Name at least one symbol: /research NVDA [quick|standard|deep|agent] [model]")
	}
	if err := withAgentOptions(&req, depthGiven, agentOpts, cap, askAt, askOff); err != nil {
		return nil, err
	}
	return c.quote(ctx, req)
}

// withAgentOptions applies cap: and ask: to a research or scan request:
// they make it an agent run unless another depth was named.
func withAgentOptions(req *research.Request, depthGiven, given bool, cap billing.Money, askAt int, askOff bool) error {
	if !given {
		return nil
	}
	if depthGiven && req.Depth != research.Agent {
		return sayf("cap: and ask: are for agent runs; a %s run's hold is already the most it can cost", req.Depth)
	}
	req.Depth, req.Cap, req.AskAt, req.AskOff = research.Agent, cap, askAt, askOff
	return nil
}

// depthWords are words people try as a depth. A word typed in lower case
// that is one of these, or a near miss of a depth (quik, standart), is
// refused as an unknown depth; a ticker typed in capitals passes.
var depthWords = []string{"ultra", "fast", "full", "light", "lite", "extended", "max", "maximum", "detailed", "brief",
	"long", "short", "normal", "medium", "basic", "advanced", "pro", "premium", "thorough", "deeper", "deepest",
	"shallow", "simple", "complete", "huge", "mini", "extra", "high", "low", "small", "large", "big"}

func looksLikeDepth(word string) bool {
	if word != strings.ToLower(word) || strings.ContainsAny(word, "0123456789.-^=") {
		return false
	}
	if slices.Contains(depthWords, word) {
		return true
	}
	for _, d := range []string{"quick", "standard", "deep"} {
		if len(word) >= 4 && editDistance(word, d) <= len(d)/4+1 {
			return true
		}
	}
	return false
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// modelFamilies start the names of well-known model families.
var modelFamilies = []string{"gpt-", "claude", "gemini", "llama", "mistral", "mixtral", "deepseek", "qwen", "o1", "o3", "o4", "grok"}

// looksLikeModel reports whether a word is surely a model name, not a ticker.
func looksLikeModel(word string) bool {
	w := strings.ToLower(word)
	for _, f := range modelFamilies {
		if strings.HasPrefix(w, f) && (len(w) > len(f) || strings.HasSuffix(f, "-")) && (strings.ContainsAny(w, "-.") || len(w) > 5) {
			return true
		}
	}
	return false
}

func hasModel(cat *research.Catalog, name string) bool {
	for _, m := range cat.Models() {
		if m == name {
			return true
		}
	}
	return false
}

func (c *Conversation) scan(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	// "csv" anywhere after the watchlist asks for the ranked table as a CSV file too.
	args, cap, askAt, askOff, agentOpts, err := agentOptions(args)
	if err != nil {
		return nil, err
	}
	var rest []string
	csv := false
	for i, a := range args {
		if i > 0 && strings.EqualFold(a, "csv") {
			csv = true
			continue
		}
		rest = append(rest, a)
	}
	if len(rest) == 0 || len(rest) > 2 {
		return nil, sayf("Usage: /scan WATCHLIST [quick|standard|deep] [csv]. Presets: %s", strings.Join(presetNames(), ", "))
	}
	req := research.Request{Kind: research.KindScan, Watchlist: rest[0], Depth: research.Quick, Owner: in.Identity, Dest: dest(in), CSV: csv}
	if len(rest) == 2 {
		d, err := research.ParseDepth(rest[1])
		if err != nil {
			return nil, err
		}
		req.Depth = d
	}
	if err := withAgentOptions(&req, len(rest) == 2, agentOpts, cap, askAt, askOff); err != nil {
		return nil, err
	}
	return c.quote(ctx, req)
}

func presetNames() []string {
	var out []string
	for k := range market.Presets {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func dest(in Incoming) research.Destination {
	return research.Destination{Platform: in.Chat.Platform, ChatID: in.Chat.ID, MessageID: in.MessageID, Token: in.Token, When: in.At}
}

// MoveRun points a run's progress at another message (an adapter that
// answers a confirm in a new public message calls it with Reply.RunID).
func (c *Conversation) MoveRun(ctx context.Context, runID string, who billing.Identity, d research.Destination) error {
	return c.Engine.Redirect(ctx, runID, who, d)
}

func (c *Conversation) quote(ctx context.Context, req research.Request) ([]Reply, error) {
	if err := c.allowQuote(req.Owner); err != nil {
		return nil, err
	}
	q, err := c.Engine.Quote(ctx, req)
	if err != nil {
		return nil, err
	}
	return []Reply{{View: c.quoteView(q)}}, nil
}

// QuoteView renders a quote card (for front ends outside a chat, like the
// one-shot command).
func (c *Conversation) QuoteView(q research.Quote) View { return c.quoteView(q) }

// ProgressView renders a run's progress card.
func (c *Conversation) ProgressView(ev research.Event) View { return c.progressView(ev) }

// press handles a button.
func (c *Conversation) press(ctx context.Context, in Incoming) ([]Reply, error) {
	if strings.HasPrefix(in.Button, "t:") {
		return c.pressTopup(ctx, in)
	}
	p, ok := parsePayload(in.Button)
	if !ok {
		return nil, sayf("That button is not valid any more.")
	}
	switch p.kind {
	case 'r':
		return c.pressRun(ctx, in, p)
	case 's':
		return c.pressSchedule(ctx, in, p)
	}
	q, err := c.Runs.Quote(ctx, p.id)
	if err != nil {
		return nil, err
	}
	if !c.Engine.MayAct(in.Identity, q.Request.Owner) && !in.Admin {
		if acc, err := c.Ledger.AccountOf(ctx, in.Identity); err != nil || acc != q.AccountID {
			return nil, research.ErrForbidden
		}
	}
	switch p.action {
	case "confirm":
		d := dest(in)
		run, nq, err := c.Engine.Confirm(c.runLimit(ctx), q.ID, in.Identity, &d)
		switch {
		case errors.Is(err, research.ErrQuoteExpired):
			return []Reply{{View: c.quoteView(nq), Edit: true, Alert: "That quote expired: here is a fresh one."}}, nil
		case errors.Is(err, research.ErrQuoteChanged):
			return []Reply{{View: c.quoteView(nq), Edit: true, Alert: "The price changed: here is a new quote."}}, nil
		case errors.Is(err, research.ErrInsufficient):
			return []Reply{{View: c.quoteView(nq), Edit: true, Alert: "Your balance no longer covers this run."}}, nil
		case errors.Is(err, research.ErrQuoteUsed):
			return []Reply{{Alert: c.usedQuote(ctx, q.ID), Refused: true}}, nil
		case err != nil:
			return nil, err
		}
		return []Reply{{View: c.progressView(c.Engine.Snapshot(run, "queued")), Edit: true, RunID: run.ID, RunVersion: run.Version,
			Alert: "Confirmed: " + run.Hold.String() + " held from " + string(run.Bucket) + "."}}, nil
	case "decline":
		if _, err := c.Engine.Decline(ctx, q.ID, in.Identity); err != nil {
			if errors.Is(err, research.ErrQuoteUsed) {
				return []Reply{{Alert: c.usedQuote(ctx, q.ID), Refused: true}}, nil
			}
			return nil, err
		}
		return []Reply{{View: View{Kind: KindInfo, Text: "Cancelled. Nothing was held or charged.", Final: true}, Edit: true}}, nil
	default: // a different depth or consent: quote again
		if q.Status != research.QuoteOpen {
			return []Reply{{Alert: "This quote is no longer open.", Refused: true}}, nil
		}
		req := q.Request
		switch p.action {
		case "consent":
			req.Consent = true
		case "noconsent":
			req.Consent = false
		default:
			req.Depth = research.Depth(p.action)
		}
		// The new quote first: if it cannot be made (too many symbols for
		// that depth, say), the old one stays open and usable.
		if err := c.allowQuote(in.Identity); err != nil {
			return nil, err
		}
		nq, err := c.Engine.Quote(ctx, req)
		if err != nil {
			return nil, err
		}
		if _, err := c.Engine.Decline(ctx, q.ID, in.Identity); err != nil {
			if errors.Is(err, research.ErrQuoteUsed) {
				return []Reply{{Alert: c.usedQuote(ctx, q.ID), Refused: true}}, nil
			}
			return nil, err
		}
		return []Reply{{View: c.quoteView(nq), Edit: true}}, nil
	}
}

// usedQuote says what became of a quote that is no longer open.
func (c *Conversation) usedQuote(ctx context.Context, id string) string {
	q, err := c.Runs.Quote(ctx, id)
	if err != nil {
		return "This quote is no longer open."
	}
	switch q.Status {
	case research.QuoteConfirmed:
		return "Already confirmed."
	case research.QuoteDeclined:
		return "This quote was cancelled or replaced; ask for a new one."
	default:
		return "This quote is no longer open."
	}
}

func (c *Conversation) pressRun(ctx context.Context, in Incoming, p payload) ([]Reply, error) {
	var (
		r   research.Run
		err error
	)
	switch p.action {
	case "cancel":
		r, err = c.Engine.Cancel(ctx, p.id, in.Identity)
	case "pause":
		r, err = c.Engine.Pause(ctx, p.id, in.Identity)
	case "resume":
		r, err = c.Engine.Resume(ctx, p.id, in.Identity)
	case "more":
		r, err = c.Engine.Continue(ctx, p.id, in.Identity)
		if err == nil {
			return []Reply{{Alert: fmt.Sprintf("Continuing: %s more held; the cap is now %s.", r.Extensions[len(r.Extensions)-1].Amount, r.Cap())}}, nil
		}
	case "wrapup":
		r, err = c.Engine.WrapUp(ctx, p.id, in.Identity)
		if err == nil {
			return []Reply{{Alert: "Wrapping up: the agent writes its answer now."}}, nil
		}
	}
	if err != nil {
		return nil, err
	}
	// The outbox shows the new state on the progress message; the presser gets
	// an immediate acknowledgement.
	return []Reply{{Alert: map[string]string{"cancel": "Cancelling…", "pause": "Pausing at the next stage…", "resume": "Resuming…"}[p.action] + " (" + string(r.State) + ")"}}, nil
}

func (c *Conversation) cancelCommand(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	acc, err := c.Ledger.AccountOf(ctx, in.Identity)
	if err != nil {
		return nil, sayf("You have no runs.")
	}
	var target string
	if len(args) == 1 {
		target = args[0]
	} else {
		runs, err := c.Runs.RunsOf(ctx, acc, 20)
		if err != nil {
			return nil, err
		}
		for _, r := range runs {
			if !r.State.Terminal() {
				target = r.ID
				break
			}
		}
		if target == "" {
			return nil, sayf("You have no run in progress.")
		}
	}
	r, err := c.Engine.Cancel(ctx, target, in.Identity)
	if err != nil {
		return nil, err
	}
	return []Reply{{View: View{Kind: KindInfo, Text: fmt.Sprintf("Cancelling run %s (%s). The final message shows what it cost.", r.ID, r.State)}}}, nil
}

func (c *Conversation) balance(ctx context.Context, in Incoming) ([]Reply, error) {
	acc, err := c.Ledger.EnsureAccount(ctx, in.Identity)
	if err != nil {
		return nil, err
	}
	bal, err := c.Ledger.Balances(ctx, acc)
	if err != nil {
		return nil, err
	}
	v := View{Kind: KindInfo, Title: "Your balance", Private: true} // figures: the owner's eyes only
	for _, b := range billing.Buckets {
		name := map[billing.Bucket]string{billing.BucketCredit: "Credit (official routes)", billing.BucketRouted: "Routed balance (routed routes)"}[b]
		v.Fields = append(v.Fields, Field{name, fmt.Sprintf("%s available (%s posted, %s held)", bal[b].Available, bal[b].Posted, bal[b].Held)})
	}
	if c.TopUpHint != "" {
		v.Text = c.TopUpHint
	}
	c.balanceExtras(ctx, in.Identity.Platform, acc, bal, &v)
	return []Reply{{View: v}}, nil
}

func (c *Conversation) usage(ctx context.Context, in Incoming) ([]Reply, error) {
	acc, err := c.Ledger.AccountOf(ctx, in.Identity)
	if err != nil {
		return []Reply{{View: View{Kind: KindInfo, Text: "No runs yet."}}}, nil
	}
	runs, err := c.Runs.RunsOf(ctx, acc, 10)
	if err != nil {
		return nil, err
	}
	money := c.moneyLines(ctx, acc)
	if len(runs) == 0 && money == "" {
		return []Reply{{View: View{Kind: KindInfo, Text: "No runs yet."}}}, nil
	}
	var b strings.Builder
	if money != "" {
		b.WriteString("Top-ups, refunds and grants:\n" + money + "\nRuns:\n")
	}
	for _, r := range runs {
		// A run not yet settled shows what it has used so far, as its card does.
		spent, suffix := r.Captured, ""
		if !r.State.Terminal() {
			spent, suffix = r.CostIn(r.Bucket), " so far"
		}
		m := billing.Alike(spent, r.Cap())
		what := strings.Join(r.Symbols, ",")
		if r.Request.Kind == research.KindAsk {
			what = "ask: " + clip(r.Request.Question, 40)
		}
		fmt.Fprintf(&b, "%s  %s  %s  %s: %s%s of %s held, %d in / %d out tokens",
			r.CreatedAt.UTC().Format("2006-01-02 15:04"), r.ID, what, r.State,
			m[0], suffix, m[1], r.TokensIn, r.TokensOut)
		if r.ReceiptID != "" {
			fmt.Fprintf(&b, ", receipt %s", r.ReceiptID)
		}
		if r.FallbackHoldID != 0 {
			fmt.Fprintf(&b, "; other-bucket fallback: %s of %s held from %s", r.FallbackCaptured, r.FallbackHold, bucketName(r.FallbackBucket))
			if r.FallbackReceiptID != "" {
				fmt.Fprintf(&b, ", receipt %s", r.FallbackReceiptID)
			}
		}
		b.WriteString("\n")
	}
	return []Reply{{View: View{Kind: KindInfo, Title: "Recent runs", Text: b.String(), Private: true}}}, nil
}

func (c *Conversation) receipt(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	if len(args) != 1 {
		return nil, sayf("Usage: /receipt ID (a receipt id or link, or a run id from /usage)")
	}
	// Pasted as chat clients quote links (<https://…>, "…", (…)) or with
	// the full stop that ended a sentence.
	id := strings.TrimRight(strings.TrimLeft(args[0], `<("'`), `>)"'.,;`)
	// A pasted receipt link: its last path part after /r/.
	if i := strings.LastIndex(id, "/r/"); i >= 0 {
		id = strings.TrimRight(strings.SplitN(strings.SplitN(id[i+3:], "?", 2)[0], "#", 2)[0], "/")
	}
	// A run id, as /usage lists them: that run's receipt.
	if r, err := c.Runs.Run(ctx, id); err == nil {
		if !c.Engine.MayAct(in.Identity, r.Owner) {
			return nil, research.ErrNotFound
		}
		if r.ReceiptID == "" {
			return nil, sayf("Run %s has no receipt yet: it is %s. Its receipt comes when it ends.", r.ID, r.State)
		}
		id = r.ReceiptID
	}
	rc, err := c.Ledger.Receipt(ctx, id)
	if err != nil {
		return nil, err
	}
	// A receipt link is a bearer secret, but the chat view is for its owner.
	if acc, err := c.Ledger.AccountOf(ctx, in.Identity); (err != nil || acc != rc.AccountID) && !c.Engine.IsAdmin(in.Identity) {
		return nil, research.ErrNotFound
	}
	v := View{Kind: KindInfo, Title: "Receipt " + rc.PublicID, Private: true, Fields: []Field{
		{"Run", rc.RunID}, {"Status", rc.Status}, {"Model / route", fmt.Sprintf("%s via %s (%s)", rc.Model, rc.Route, rc.RouteKind)},
		{"Paid from", string(rc.Bucket)},
		{"Tokens", fmt.Sprintf("%d in (%s) / %d out (%s)", rc.TokensIn, rc.TokensInSource, rc.TokensOut, rc.TokensOutSource)},
		{"Held / charged / released", strings.Join(billing.Alike(rc.Held, rc.Captured, rc.Released), " / ")},
		{"Attempts", fmt.Sprint(rc.Attempts)},
	}}
	if rc.Purchase != "" {
		v.Fields = append(v.Fields[:1], append([]Field{{"Bought", rc.Purchase}}, v.Fields[1:]...)...)
	}
	if rc.Notes != "" {
		v.Fields = append(v.Fields, Field{"Notes", rc.Notes})
	}
	if len(rc.Steps) > 0 {
		steps := make([]research.StepLine, len(rc.Steps))
		for i, s := range rc.Steps {
			steps[i] = research.StepLine{Step: s.Step, Kind: research.StepKind(s.Kind), Label: s.Label, TokensIn: s.TokensIn,
				TokensOut: s.TokensOut, Cost: s.Cost, Took: s.Took, Error: s.Error}
		}
		v.Fields = append(v.Fields, Field{"Steps", strings.TrimRight(renderSteps(steps), "\n")})
	}
	if c.Engine.ReceiptURL != nil {
		v.Buttons = [][]Button{{{Label: "Open receipt", URL: c.Engine.ReceiptURL(rc.PublicID)}}}
	}
	return []Reply{{View: v}}, nil
}

func (c *Conversation) modelsView() View {
	cat := c.Engine.Catalog
	var b strings.Builder
	for _, m := range cat.Models() {
		fmt.Fprintf(&b, "%s\n", m)
		for _, r := range cat.Routes {
			if r.Model != m {
				continue
			}
			state := "enabled"
			if !r.Enabled {
				state = "disabled"
			}
			fmt.Fprintf(&b, "  %s: %s route, pays from %s, %s, %s", r.ID, r.Kind, r.Bucket(), r.Price, state)
			if c.Engine.Health != nil {
				if st := c.Engine.Health.Stats(r.ID); st.Samples > 0 {
					fmt.Fprintf(&b, ", health %.0f%% ok over %d calls, %.0f tok/s", st.SuccessRate*100, st.Samples, st.TokensPerSecond)
					if !st.CoolingUntil.IsZero() && st.CoolingUntil.After(time.Now()) {
						b.WriteString(", cooling down")
					}
				}
			}
			if n := cat.Notes[r.ID]; n != "" {
				b.WriteString(" (" + n + ")")
			}
			b.WriteString("\n")
		}
	}
	return View{Kind: KindInfo, Title: "Models and routes", Text: b.String()}
}

// EditRun edits a run's message at d with a view of the run at version
// (an answer to a button press) through the outbox's per-run order: edit is
// not called, and false returned, when a newer view or the run's final went
// out from any instance, or the run ended (see Outbox.EditRun).
func (c *Conversation) EditRun(ctx context.Context, d research.Destination, runID string, version int64, edit func(context.Context) error) (bool, error) {
	if c.Outbox == nil {
		return true, edit(ctx)
	}
	return c.Outbox.EditRun(ctx, d, runID, version, edit)
}

// Publish implements research.Sink: it renders a run's event and hands it to
// the outbox for the run's message.
func (c *Conversation) Publish(ev research.Event) {
	if c.Outbox == nil {
		return
	}
	var v View
	if ev.Final {
		v = c.finalView(ev, c.captureEntry(ev.Run))
		c.lowBalance(&v, ev.Run)
	} else {
		v = c.progressView(ev)
	}
	d := ev.Run.Request.Dest
	if d.MessageID == "" {
		d.Ref = ev.Run.ID // a run that starts without a message (scheduled) gets one
	}
	c.Outbox.SubmitRun(d, v, ev.Run.ID, ev.Run.Version)
}

// Notify posts a short notice to a chat (a schedule's skipped run, say).
func (c *Conversation) Notify(_ context.Context, d research.Destination, text string) {
	if c.Outbox == nil {
		return
	}
	// A new message each time: two notices to one chat are two messages,
	// never one replacing the other in the outbox.
	d.MessageID, d.Ref = "", "notice:"+newRef()
	c.Outbox.Submit(d, View{Kind: KindInfo, Text: text, Final: true})
}

// NotifyOwner posts text to a user's private chat with the bot: notices
// with figures (a schedule skipped for too little balance) that the chat
// the schedule posts to must not see. The destination's chat is
// "user:ID", which each adapter resolves to its private chat.
func (c *Conversation) NotifyOwner(ctx context.Context, owner billing.Identity, text string) {
	c.Notify(ctx, research.Destination{Platform: owner.Platform, ChatID: PrivateChat(owner)}, text)
}

// PrivateChat is the chat id of a user's private chat with the bot, for a
// Destination: adapters resolve "user:ID".
func PrivateChat(who billing.Identity) string { return "user:" + who.ExternalID }

// captureEntry is the ledger entry that charged a run, for the final card:
// the settle names it; a run settled before it did is looked up.
func (c *Conversation) captureEntry(r research.Run) int64 {
	if r.CaptureEntryID != 0 || r.Captured == 0 {
		return r.CaptureEntryID
	}
	entries, err := c.Ledger.Entries(context.Background(), r.AccountID, 50)
	if err != nil {
		return 0
	}
	for _, e := range entries {
		if e.HoldID == r.HoldID && e.Kind == billing.KindCapture {
			return e.ID
		}
	}
	return 0
}

// Link codes: 8 characters from an alphabet without look-alikes, valid for
// 10 minutes, single use, at most 5 made per hour; wrong guesses are limited
// per identity so the 40-bit space cannot be searched.
const (
	linkAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	linkTTL      = 10 * time.Minute
	linkPerHour  = 5
	// linkGuessesPerHour bounds redeem attempts per identity (in the store,
	// so restarts and other instances share the count).
	linkGuessesPerHour = 10
)

func newLinkCode() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = linkAlphabet[int(b[i])%len(linkAlphabet)]
	}
	return string(b[:])
}

func (c *Conversation) link(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	switch len(args) {
	case 0:
		if _, err := c.Ledger.EnsureAccount(ctx, in.Identity); err != nil {
			return nil, err
		}
		code := newLinkCode()
		if err := c.Ledger.CreateLinkCode(ctx, in.Identity, code, linkTTL, linkPerHour); err != nil {
			return nil, err
		}
		return []Reply{{View: View{Kind: KindInfo, Private: true, Title: "Link your accounts",
			Text: fmt.Sprintf("On your other platform, send: /link %s\nThe code works once, for 10 minutes. Both accounts will then share one wallet.", code)}}}, nil
	case 1:
		code := strings.ToUpper(strings.TrimSpace(args[0]))
		if len(code) != 8 || strings.Trim(code, linkAlphabet) != "" {
			return nil, sayf("That is not a link code. Send /link on your other platform to get one.")
		}
		if _, err := c.Ledger.RedeemLinkCode(ctx, code, in.Identity, linkGuessesPerHour); err != nil {
			if errors.Is(err, billing.ErrNotFound) {
				return nil, sayf("That code is unknown, used or expired.")
			}
			return nil, err
		}
		return []Reply{{View: View{Kind: KindInfo, Private: true, Text: "Linked: this account now shares its wallet with your other platform's. Check with /balance."}}}, nil
	}
	return nil, sayf("Usage: /link to get a code, /link CODE to use one.")
}

func (c *Conversation) watchlist(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	usage := sayf("Usage: /watchlist show [NAME] | /watchlist add NAME SYMBOLS... | /watchlist remove NAME [SYMBOLS...]")
	if len(args) == 0 || args[0] == "show" {
		own, presets, err := c.Engine.WatchlistsOf(ctx, in.Identity)
		if err != nil {
			return nil, err
		}
		if len(args) > 2 {
			return nil, usage
		}
		if len(args) == 2 { // one list, yours first (it shadows a preset of that name)
			name := strings.ToLower(args[1])
			for _, group := range []struct {
				title string
				lists map[string][]string
			}{{"yours", own}, {"preset", presets}} {
				for n, syms := range group.lists {
					if strings.ToLower(n) == name {
						return []Reply{{View: View{Kind: KindInfo, Title: "Watchlist " + n + " (" + group.title + ")", Text: strings.Join(syms, " ")}}}, nil
					}
				}
			}
			return nil, sayf("No watchlist %q. /watchlist show lists yours and the presets.", clip(args[1], 32))
		}
		var b strings.Builder
		for _, group := range []struct {
			title string
			lists map[string][]string
		}{{"Yours", own}, {"Presets", presets}} {
			fmt.Fprintf(&b, "%s:\n", group.title)
			if len(group.lists) == 0 {
				b.WriteString("  none yet: /watchlist add NAME SYMBOLS...\n")
			}
			names := make([]string, 0, len(group.lists))
			for n := range group.lists {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				fmt.Fprintf(&b, "  %s: %s\n", n, strings.Join(group.lists[n], " "))
			}
		}
		return []Reply{{View: View{Kind: KindInfo, Title: "Watchlists", Text: b.String()}}}, nil
	}
	if len(args) < 2 {
		return nil, usage
	}
	var (
		syms []string
		err  error
	)
	switch args[0] {
	case "add":
		if len(args) < 3 {
			return nil, usage
		}
		syms, err = c.Engine.WatchlistAdd(ctx, in.Identity, args[1], splitSymbols(args[2:]))
	case "remove":
		syms, err = c.Engine.WatchlistRemove(ctx, in.Identity, args[1], splitSymbols(args[2:]))
	default:
		return nil, usage
	}
	if err != nil {
		return nil, err
	}
	if len(syms) == 0 {
		return []Reply{{View: View{Kind: KindInfo, Text: "Watchlist " + args[1] + " removed."}}}, nil
	}
	return []Reply{{View: View{Kind: KindInfo, Text: fmt.Sprintf("Watchlist %s: %s", args[1], strings.Join(syms, " "))}}}, nil
}

func splitSymbols(args []string) []string {
	var out []string
	for _, a := range args {
		for _, s := range strings.Split(a, ",") {
			if s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
