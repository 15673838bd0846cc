package discord_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/discord"
	"github.com/tokensforge/forgebot/bots/discord/discordtest"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

var (
	alice   = discordtest.User{ID: "400000000000000001"}
	bob     = discordtest.User{ID: "400000000000000002"}
	admin   = discordtest.User{ID: "400000000000000003", Roles: []string{"700000000000000001"}}
	guild   = "500000000000000001"
	channel = discordtest.Where{Channel: "600000000000000001", Guild: guild}
)

func identity(u discordtest.User) billing.Identity {
	return billing.Identity{Platform: "discord", ExternalID: u.ID}
}

type options struct {
	bed        testbed.Options
	http       bool
	deferAfter time.Duration
	buckets    []discordtest.Bucket
	limits     *bots.Limits // instead of discord.Limits
	// before runs on the bed before the adapter starts (slow stores).
	before func(b *testbed.Bed, conv *bots.Conversation)
	// adapter runs on the adapter before anything uses it.
	adapter func(a *discord.Adapter)
	// refuseLink is the fake's Options.RefuseLink.
	refuseLink func(url string) bool
}

type bundle struct {
	bed   *testbed.Bed
	fake  *discordtest.Server
	ad    *discord.Adapter
	conv  *bots.Conversation
	ob    *bots.Outbox
	clock *testbed.Clock // the adapter's and the fake's: tests move it past the token's 15 minutes
	logs  *testbed.Screen
	// endpoint is the HTTP interactions URL in HTTP mode.
	endpoint string
}

func setup(t testing.TB, o options) *bundle {
	t.Helper()
	b := &bundle{clock: &testbed.Clock{}, logs: &testbed.Screen{}}
	b.bed = testbed.New(t, o.bed)
	log := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.ob = bots.NewOutbox(log)
	b.conv = &bots.Conversation{Engine: b.bed.Engine, Ledger: b.bed.Store, Runs: b.bed.Store, Outbox: b.ob, Log: log,
		TopUpHint: "Top up at example.test."}
	conv := b.conv
	b.bed.Engine.Sink = research.SinkFunc(func(ev research.Event) {
		b.bed.Events.Publish(ev)
		conv.Publish(ev)
	})
	if o.before != nil {
		o.before(b.bed, b.conv)
	}
	b.fake = discordtest.New(t, discordtest.Options{Now: b.clock.Now, Buckets: o.buckets, RefuseLink: o.refuseLink})
	cfg := discord.Config{Token: b.fake.BotToken, AppID: b.fake.AppID, GuildID: guild, APIURL: b.fake.URL,
		AdminRoles: admin.Roles, Log: log, Now: b.clock.Now, DeferAfter: o.deferAfter}
	var srv *httptest.Server
	if o.http {
		cfg.HTTPInteractions = true
		cfg.PublicKey = hexKey(b.fake)
	}
	ad, err := discord.New(cfg, b.conv)
	if err != nil {
		t.Fatal(err)
	}
	b.ad = ad
	if o.adapter != nil {
		o.adapter(ad)
	}
	limits := discord.Limits
	if o.limits != nil {
		limits = *o.limits
	}
	b.ob.Register("discord", ad, limits)
	ctx, cancel := context.WithCancel(context.Background())
	go b.ob.Run(ctx)
	if o.http {
		mux := http.NewServeMux()
		ad.Mount(mux)
		srv = httptest.NewServer(mux)
		b.endpoint = srv.URL + discord.InteractionsPath
	}
	if err := ad.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, cancelStop := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelStop()
		ad.Stop(stop)
		cancel()
		if srv != nil {
			srv.Close()
		}
		b.checkMessages(t)
	})
	if !o.http {
		b.fake.Wait(t, "a gateway session", 5*time.Second, b.fake.Connected)
	}
	return b
}

func hexKey(f *discordtest.Server) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range f.PublicKey {
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&15])
	}
	return sb.String()
}

// checkMessages holds for every test: every request that carried text had
// empty allowed mentions, nothing broke Discord's limits, no first response
// was late, and no token reached a log line.
func (b *bundle) checkMessages(t testing.TB) {
	t.Helper()
	for _, r := range b.fake.Requests() {
		if len(r.Violations) > 0 {
			t.Errorf("%s %s broke Discord's limits: %v", r.Route, r.Path, r.Violations)
		}
		if !r.CarriesText {
			continue
		}
		var am struct {
			Parse *[]string `json:"parse"`
			Users []string  `json:"users"`
			Roles []string  `json:"roles"`
		}
		if len(r.Mentions) == 0 || json.Unmarshal(r.Mentions, &am) != nil || am.Parse == nil || len(*am.Parse) != 0 || len(am.Users)+len(am.Roles) > 0 {
			t.Errorf("%s %s carried text with allowed_mentions %s, want {\"parse\":[]}", r.Route, r.Path, r.Mentions)
		}
	}
	for _, c := range b.fake.Callbacks() {
		if c.Late {
			t.Errorf("interaction %s answered after %s", c.InteractionID, c.After)
		}
	}
	logs := b.logs.String()
	if strings.Contains(logs, b.fake.BotToken) || strings.Contains(logs, "itok-") {
		t.Errorf("a token reached the logs:\n%s", logs)
	}
}

// send delivers an interaction the way the adapter takes them and waits for
// its first response.
func (b *bundle) send(t testing.TB, in *discordtest.Interaction) discordtest.Callback {
	t.Helper()
	if b.endpoint != "" {
		if status := b.fake.Post(t, b.endpoint, in); status != http.StatusOK {
			t.Fatalf("interactions endpoint answered %d", status)
		}
	} else {
		b.fake.Dispatch(t, in)
	}
	var cb discordtest.Callback
	b.fake.Wait(t, "the interaction's response", wait, func() bool {
		var ok bool
		cb, ok = b.fake.Callback(in.ID)
		return ok
	})
	return cb
}

func (b *bundle) command(t testing.TB, u discordtest.User, name string, opts ...discordtest.Option) (*discordtest.Interaction, discordtest.Callback) {
	t.Helper()
	in := b.fake.Command(u, channel, name, opts...)
	return in, b.send(t, in)
}

func (b *bundle) click(t testing.TB, u discordtest.User, m discordtest.Message, customID string) (*discordtest.Interaction, discordtest.Callback) {
	t.Helper()
	in := b.fake.Click(u, guild, m, customID)
	return in, b.send(t, in)
}

// original waits for an interaction's @original message to hold something.
func (b *bundle) original(t testing.TB, in *discordtest.Interaction) discordtest.Message {
	t.Helper()
	var m discordtest.Message
	b.fake.Wait(t, "@original", wait, func() bool {
		var ok bool
		m, ok = b.fake.Original(in.ID)
		return ok && !m.Loading
	})
	return m
}

// wait bounds every wait on the fake: generous, because under -race with every package's tests on two
// cores a run can take tens of seconds; a hang still fails the test.
const wait = 60 * time.Second

// message waits for a message that matches.
func (b *bundle) message(t testing.TB, what string, match func(discordtest.Message) bool) discordtest.Message {
	t.Helper()
	var found discordtest.Message
	b.fake.Wait(t, what, wait, func() bool {
		for _, m := range b.fake.Messages() {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// channelMessage waits for the bot's channel message with id to match.
func (b *bundle) channelMessage(t testing.TB, id, what string, match func(discordtest.Message) bool) discordtest.Message {
	t.Helper()
	return b.message(t, what, func(m discordtest.Message) bool { return m.ID == id && match(m) })
}

func button(t testing.TB, m discordtest.Message, label string) string {
	t.Helper()
	for _, row := range m.Components {
		for _, btn := range row {
			if strings.HasPrefix(btn.Label, label) {
				if len(btn.CustomID) > 100 {
					t.Fatalf("custom_id %q is over 100 characters", btn.CustomID)
				}
				return btn.CustomID
			}
		}
	}
	t.Fatalf("no %q button on message %s: %+v", label, m.ID, m.Components)
	return ""
}

func labels(m discordtest.Message) []string {
	var out []string
	for _, row := range m.Components {
		for _, btn := range row {
			out = append(out, btn.Label)
		}
	}
	return out
}

func title(m discordtest.Message) string {
	if len(m.Embeds) == 0 {
		return ""
	}
	return m.Embeds[0].Title
}

func text(m discordtest.Message) string {
	var sb strings.Builder
	sb.WriteString(m.Content)
	for _, e := range m.Embeds {
		sb.WriteString("\n" + e.Title + "\n" + e.Description)
		for _, f := range e.Fields {
			sb.WriteString("\n" + f.Name + ": " + f.Value)
		}
		if e.Footer != nil {
			sb.WriteString("\n" + e.Footer.Text)
		}
	}
	return sb.String()
}

func callbackData(t testing.TB, cb discordtest.Callback) (flags int, content string) {
	t.Helper()
	var d struct {
		Flags   int    `json:"flags"`
		Content string `json:"content"`
	}
	if len(cb.Data) > 0 {
		if err := json.Unmarshal(cb.Data, &d); err != nil {
			t.Fatal(err)
		}
	}
	return d.Flags, d.Content
}

var runIDRE = regexp.MustCompile(`^r:(r[A-Za-z0-9_-]{16}):`)

// runOf reads the run id from a progress message's Cancel button.
func runOf(t testing.TB, m discordtest.Message) string {
	t.Helper()
	sub := runIDRE.FindStringSubmatch(button(t, m, "Cancel"))
	if sub == nil {
		t.Fatalf("no run in %+v", m.Components)
	}
	return sub[1]
}

// apiRoutes is one official API route on the bed's fake LLM.
func apiRoutes(url string) []llm.Route {
	price := billing.Price{InputPerM: 1 * billing.Micro, OutputPerM: 4 * billing.Micro}
	return []llm.Route{{ID: "api-a", Kind: billing.RouteOfficial, Model: "gpt-test", BaseURL: url, APIKey: "sk-test-aaaa1111", Price: price, Enabled: true}}
}

// progressMessage finds the run's public progress message: a bot channel
// message (not an interaction response) with a Cancel button.
func (b *bundle) progressMessage(t testing.TB) discordtest.Message {
	t.Helper()
	return b.message(t, "the public progress message", func(m discordtest.Message) bool {
		return m.Source == "channel" && !m.Ephemeral && strings.Contains(title(m), "Research")
	})
}

// TestRunToCompletion walks the whole flow on the gateway: /research answers
// with an ephemeral quote; Confirm turns it into a note and posts a public
// progress message that is edited while the run works and ends with the
// final report: chart, receipt link, charge, notice. The model writes
// "@everyone": nobody is pinged (checkMessages checks allowed mentions on
// every message).
func TestRunToCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{RoutesFor: apiRoutes}})
	gate := make(chan struct{})
	b.bed.LLM.Enqueue(modelAnswer(gate))
	b.bed.Fund(identity(alice), billing.BucketCredit, billing.Micro)

	qin, cb := b.command(t, alice, "research", discordtest.String("symbols", "NVDA amd"), discordtest.String("model", "gpt-test"))
	// An ephemeral message at once (4), or, when the quote takes longer than the adapter's defer budget
	// (a loaded machine), an ephemeral "thinking" (5) that the quote then replaces. How fast the quote is
	// belongs in a benchmark, not here.
	if flags, _ := callbackData(t, cb); (cb.Type != 4 && cb.Type != 5) || flags&64 == 0 {
		t.Fatalf("quote response type %d flags %d, want an ephemeral message (4 or 5, 64)", cb.Type, flags)
	}
	quote := b.original(t, qin)
	if !strings.Contains(title(quote), "Quote") || !strings.Contains(title(quote), "NVDA, AMD") || !quote.Ephemeral {
		t.Fatalf("quote = %q %+v", title(quote), quote)
	}
	if got := strings.Join(labels(quote), "|"); !strings.Contains(got, "Confirm $") || strings.Contains(got, "other-bucket") { // one route: no fallback choice (issue 15)
		t.Fatalf("quote buttons = %s", got)
	}
	if opts := menuOptions(quote, "select:depth"); !strings.Contains(opts, "Standard") || !strings.Contains(opts, "Deep") {
		t.Fatalf("depth select options = %q", opts)
	}

	cin, cb := b.click(t, alice, quote, button(t, quote, "Confirm"))
	if cb.Type != 7 {
		t.Fatalf("confirm answered with type %d, want 7 (update the quote)", cb.Type)
	}
	note := b.original(t, cin)
	if note.ID != quote.ID || !strings.Contains(text(note), "Confirmed") || len(note.Components) != 0 {
		t.Fatalf("the quote after confirm = %q %+v", text(note), note.Components)
	}
	progress := b.progressMessage(t)
	if got := strings.Join(labels(progress), "|"); got != "Cancel|Pause" {
		t.Fatalf("progress buttons = %s", got)
	}
	runID := runOf(t, progress)
	// The run waits on the model: the message shows it running.
	b.channelMessage(t, progress.ID, "a running progress edit", func(m discordtest.Message) bool {
		return m.Edits > 0 && strings.Contains(title(m), "running") && strings.Contains(text(m), "█")
	})
	close(gate)
	final := b.channelMessage(t, progress.ID, "the final report", func(m discordtest.Message) bool {
		return strings.Contains(title(m), "succeeded")
	})
	body := text(final)
	for _, want := range []string{"@everyone", "Charged", "ledger entry", "from your Credit", research.Notice} {
		if !strings.Contains(body, want) {
			t.Errorf("final message lacks %q:\n%s", want, body)
		}
	}
	last := final.Embeds[len(final.Embeds)-1]
	if last.Image == nil || !strings.HasPrefix(last.Image.URL, "attachment://chart-"+runID) {
		t.Errorf("final embed image = %+v", last.Image)
	}
	var chart bool
	for _, a := range final.Attachments {
		chart = chart || (strings.HasPrefix(a.Filename, "chart-") && a.ContentType == "image/png" && bytes.HasPrefix(a.Data, []byte("\x89PNG")))
	}
	if !chart {
		t.Errorf("no chart attachment in %+v", final.Attachments)
	}
	if len(final.Components) != 1 || final.Components[0][0].Style != 5 || !strings.HasPrefix(final.Components[0][0].URL, "http://forgebot.test/r/") {
		t.Errorf("final buttons = %+v, want only the receipt link", final.Components)
	}
	if last.Footer == nil || last.Footer.Text != research.Notice {
		t.Errorf("final footer = %+v", last.Footer)
	}
	// The quote note was not overwritten by the run's progress.
	if m, _ := b.fake.Message(quote.ID); !strings.Contains(text(m), "Confirmed") {
		t.Errorf("the quote message became %q", text(m))
	}
	if err := b.ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.bed.CheckSettled()
}

// modelAnswer scripts the model: held until gate closes, then writing
// @everyone, a role mention and Markdown.
func modelAnswer(gate chan struct{}) llmtest.Response {
	return llmtest.Stream("@everyone NVDA and AMD look strong. ", "<@&123456789012345678> @here ", "**not bold** done.").WithGate(gate)
}

// atTheModel waits until the run is blocked on the model and every view
// before that is on screen: nothing changes until the gate opens.
func (b *bundle) atTheModel(t testing.TB) {
	t.Helper()
	b.fake.Wait(t, "the run to call the model", wait, func() bool { return len(b.bed.LLM.Requests()) > 0 })
	if err := b.ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func asRetry(err error, ra **bots.RetryAfterError) bool { return errors.As(err, ra) }

// TestCancelAndRefusals: another user's clicks get an ephemeral refusal and
// change nothing; an admin role may cancel anyone's run; the final shows
// "cancelled".
func TestCancelAndRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{RoutesFor: apiRoutes}})
	gate := make(chan struct{})
	b.bed.LLM.Enqueue(modelAnswer(gate))
	defer close(gate)
	b.bed.Fund(identity(alice), billing.BucketCredit, billing.Micro)

	qin, cb := b.command(t, alice, "research", discordtest.String("symbols", "AAPL"), discordtest.String("model", "gpt-test"),
		discordtest.Bool("public", true))
	if flags, _ := callbackData(t, cb); flags&64 != 0 {
		t.Fatal("public:true gave an ephemeral quote")
	}
	quote := b.original(t, qin)

	_, cb = b.click(t, bob, quote, button(t, quote, "Confirm"))
	if flags, content := callbackData(t, cb); cb.Type != 4 || flags&64 == 0 || !strings.Contains(content, "Only the person") {
		t.Fatalf("bob's confirm: type %d flags %d %q, want an ephemeral refusal", cb.Type, flags, content)
	}
	if m, _ := b.fake.Message(quote.ID); m.Edits != 0 || b.bed.OpenHolds() != 0 {
		t.Fatalf("bob's press changed the quote (%d edits) or held money", m.Edits)
	}

	b.click(t, alice, quote, button(t, quote, "Confirm"))
	progress := b.progressMessage(t)
	b.atTheModel(t)
	before, _ := b.fake.Message(progress.ID)
	if !strings.Contains(title(before), "running") {
		t.Fatalf("progress while the model works = %q", title(before))
	}
	_, cb = b.click(t, bob, before, button(t, before, "Cancel"))
	if flags, content := callbackData(t, cb); cb.Type != 4 || flags&64 == 0 || !strings.Contains(content, "Only the person") {
		t.Fatalf("bob's cancel: type %d flags %d %q", cb.Type, flags, content)
	}
	if err := b.ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if after, _ := b.fake.Message(progress.ID); after.Edits != before.Edits {
		t.Fatalf("bob's cancel changed the progress message")
	}

	_, cb = b.click(t, admin, before, button(t, before, "Cancel"))
	if flags, content := callbackData(t, cb); cb.Type != 4 || flags&64 == 0 || !strings.Contains(content, "Cancelling") {
		t.Fatalf("admin's cancel: type %d flags %d %q", cb.Type, flags, content)
	}
	final := b.channelMessage(t, progress.ID, "the cancelled final", func(m discordtest.Message) bool {
		return strings.Contains(title(m), "cancelled")
	})
	if strings.Contains(strings.Join(labels(final), "|"), "Cancel") {
		t.Fatalf("the final still offers Cancel: %v", labels(final))
	}
	if err := b.ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.bed.CheckSettled()
}

// TestRunOutlivesToken: a run still working 16 minutes after its confirm
// keeps being edited through its channel message with the bot token; no
// request uses the dead interaction token.
func TestRunOutlivesToken(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{RoutesFor: apiRoutes}})
	gate := make(chan struct{})
	b.bed.LLM.Enqueue(modelAnswer(gate))
	b.bed.Fund(identity(alice), billing.BucketCredit, billing.Micro)
	qin, _ := b.command(t, alice, "research", discordtest.String("symbols", "MSFT"), discordtest.String("model", "gpt-test"))
	quote := b.original(t, qin)
	b.click(t, alice, quote, button(t, quote, "Confirm"))
	progress := b.progressMessage(t)
	b.atTheModel(t)
	if m, _ := b.fake.Message(progress.ID); !strings.Contains(title(m), "running") {
		t.Fatalf("progress while the model works = %q", title(m))
	}

	b.clock.Advance(16 * time.Minute)
	mark := len(b.fake.Requests())
	close(gate)
	b.channelMessage(t, progress.ID, "the final after 16 minutes", func(m discordtest.Message) bool {
		return strings.Contains(title(m), "succeeded")
	})
	for _, r := range b.fake.Requests()[mark:] {
		if r.TokenAge >= discordtest.TokenLife || (r.Route != discordtest.RouteChannelEdit && r.Route != discordtest.RouteChannelMessage) {
			t.Errorf("after the token died: %s %s (status %d)", r.Route, r.Path, r.Status)
		}
	}
}

// TestEditAfterTokenDies: a message only an interaction token could edit
// (an ephemeral reply) is continued in a new channel message once the token
// is too old, and later views edit that message.
func TestEditAfterTokenDies(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}})
	in, _ := b.command(t, alice, "help")
	msg := b.original(t, in)
	d := research.Destination{Platform: "discord", ChatID: channel.Channel, MessageID: msg.ID, Token: in.Token, When: b.clock.Now()}
	if err := b.ad.Edit(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "step 1", Text: "one"}); err != nil {
		t.Fatal(err)
	}
	if m, _ := b.fake.Message(msg.ID); title(m) != "step 1" {
		t.Fatalf("the token edit did not land: %q", title(m))
	}
	b.clock.Advance(15 * time.Minute)
	if err := b.ad.Edit(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "step 2", Text: "two"}); err != nil {
		t.Fatal(err)
	}
	moved := b.message(t, "a channel message taking over", func(m discordtest.Message) bool {
		return m.Source == "channel" && title(m) == "step 2"
	})
	if err := b.ad.Edit(t.Context(), d, bots.View{Kind: bots.KindFinal, Title: "done", Text: "three", Final: true}); err != nil {
		t.Fatal(err)
	}
	if m, _ := b.fake.Message(moved.ID); title(m) != "done" || m.Edits != 1 {
		t.Fatalf("the channel message = %q after %d edits", title(m), m.Edits)
	}
	for _, r := range b.fake.Requests() {
		if r.TokenAge >= discordtest.TokenLife-time.Minute && r.Route == discordtest.RouteWebhookEdit {
			t.Errorf("a webhook edit with a token %s old", r.TokenAge)
		}
	}
}

// slowLedger holds EnsureAccount (the first store call of a quote) until
// the test opens the gate.
type slowLedger struct {
	research.Ledger
	gate <-chan struct{}
}

func (l slowLedger) EnsureAccount(ctx context.Context, id billing.Identity) (billing.AccountID, error) {
	select {
	case <-l.gate:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return l.Ledger.EnsureAccount(ctx, id)
}

// TestDeadlineKeptWhileStoreIsSlow: with the store stuck, /research still
// gets a (deferred, ephemeral) response inside 3 s; the quote replaces it
// when the store answers.
func TestDeadlineKeptWhileStoreIsSlow(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}, before: func(bed *testbed.Bed, _ *bots.Conversation) {
		bed.Engine.Ledger = slowLedger{Ledger: bed.Store, gate: gate}
	}})
	in, cb := b.command(t, alice, "research", discordtest.String("symbols", "NVDA"))
	if flags, _ := callbackData(t, cb); cb.Type != 5 || flags&64 == 0 {
		t.Fatalf("slow store: first response type %d flags %d, want a deferred ephemeral one (5, 64)", cb.Type, flags)
	}
	if cb.After >= discordtest.Deadline-300*time.Millisecond || cb.Late {
		t.Fatalf("the deferred response came after %s", cb.After)
	}
	if m, ok := b.fake.Original(in.ID); !ok || !m.Loading || !m.Ephemeral {
		t.Fatalf("deferred @original = %+v", m)
	}
	close(gate)
	quote := b.original(t, in)
	if !strings.Contains(title(quote), "Quote") || len(quote.Components) == 0 {
		t.Fatalf("the quote after the store answered = %q", title(quote))
	}
}

// slowRuns holds quote lookups (every quote button press starts with one).
type slowRuns struct {
	research.Store
	gate <-chan struct{}
}

func (s slowRuns) Quote(ctx context.Context, id string) (research.Quote, error) {
	select {
	case <-s.gate:
	case <-ctx.Done():
		return research.Quote{}, ctx.Err()
	}
	return s.Store.Quote(ctx, id)
}

// TestSlowConfirmOverHTTP: on the HTTP endpoint, a Confirm whose store is
// slow gets a deferred update inside the deadline; the note and the public
// progress message follow.
func TestSlowConfirmOverHTTP(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	b := setup(t, options{http: true, bed: testbed.Options{NoWorkers: true},
		before: func(bed *testbed.Bed, conv *bots.Conversation) { conv.Runs = slowRuns{Store: bed.Store, gate: gate} }})
	b.bed.Fund(identity(alice), billing.BucketCredit, billing.Micro)
	qin, cb := b.command(t, alice, "research", discordtest.String("symbols", "NVDA"))
	if cb.Type != 4 || cb.Via != "http" {
		t.Fatalf("quote over HTTP: %+v", cb)
	}
	quote := b.original(t, qin)
	cin := b.fake.Click(alice, guild, quote, button(t, quote, "Confirm"))
	cb = b.send(t, cin) // returns with the endpoint's answer, the store still stuck
	close(gate)
	if cb.Type != 6 || cb.After >= discordtest.Deadline {
		t.Fatalf("slow confirm: type %d after %s, want a deferred update (6)", cb.Type, cb.After)
	}
	b.message(t, "the note on the quote", func(m discordtest.Message) bool {
		return m.ID == quote.ID && strings.Contains(text(m), "Confirmed")
	})
	progress := b.progressMessage(t)
	// The refreshed progress view goes out once the run has moved.
	b.channelMessage(t, progress.ID, "the progress refreshed after the move", func(m discordtest.Message) bool { return m.Edits > 0 })
	run, err := b.bed.Store.Run(t.Context(), runOf(t, progress))
	if err != nil {
		t.Fatal(err)
	}
	if run.Request.Dest.MessageID != progress.ID || run.Request.Dest.Token != "" {
		t.Fatalf("the run reports to %+v, want the channel message %s without a token", run.Request.Dest, progress.ID)
	}
}

// TestHTTPEndpointRefusesForgeries: a bad signature and a stale timestamp
// get 401; PING gets PONG.
func TestHTTPEndpointRefusesForgeries(t *testing.T) {
	t.Parallel()
	b := setup(t, options{http: true, bed: testbed.Options{NoWorkers: true}})
	ping := []byte(`{"id":"1","application_id":"` + b.fake.AppID + `","type":1,"token":"t","version":1}`)

	sig, stamp := b.fake.Sign(ping, b.clock.Now(), nil)
	resp, body, err := b.fake.PostRaw(b.endpoint, ping, sig, stamp)
	if err != nil || resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"type":1}` {
		t.Fatalf("PING: %v %v %s", err, resp, body)
	}

	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	sig, stamp = b.fake.Sign(ping, b.clock.Now(), otherKey)
	if resp, _, _ := b.fake.PostRaw(b.endpoint, ping, sig, stamp); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged signature: %d, want 401", resp.StatusCode)
	}
	sig, stamp = b.fake.Sign(ping, b.clock.Now(), nil)
	tampered := bytes.Replace(ping, []byte(`"type":1`), []byte(`"type":2`), 1)
	if resp, _, _ := b.fake.PostRaw(b.endpoint, tampered, sig, stamp); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("tampered body: %d, want 401", resp.StatusCode)
	}
	if resp, _, _ := b.fake.PostRaw(b.endpoint, ping, "", stamp); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no signature: %d, want 401", resp.StatusCode)
	}
	sig, stamp = b.fake.Sign(ping, b.clock.Now().Add(-6*time.Minute), nil)
	if resp, _, _ := b.fake.PostRaw(b.endpoint, ping, sig, stamp); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stale timestamp: %d, want 401", resp.StatusCode)
	}
	// A command replayed 6 minutes later is refused and never reaches the conversation.
	in := b.fake.Command(alice, channel, "balance")
	sig, stamp = b.fake.Sign(in.Body, b.clock.Now(), nil)
	b.clock.Advance(6 * time.Minute)
	if resp, _, _ := b.fake.PostRaw(b.endpoint, in.Body, sig, stamp); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed command: %d, want 401", resp.StatusCode)
	}
	if _, err := b.bed.Store.AccountOf(t.Context(), identity(alice)); err == nil {
		t.Fatal("a replayed /balance made an account")
	}
}

// TestCommandsGatewayAndAutocomplete: the commands registered in the guild
// with typed options; the gateway handshake; model and watchlist
// autocomplete from the catalog and the presets.
func TestCommandsGatewayAndAutocomplete(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true, RoutesFor: apiRoutes}})
	cmds := b.fake.Commands(guild)
	if len(cmds) != len(bots.Commands) || len(b.fake.Commands("global")) != 0 {
		t.Fatalf("registered %d guild commands, %d global; want %d in the guild", len(cmds), len(b.fake.Commands("global")), len(bots.Commands))
	}
	byName := map[string]map[string]bool{}
	for _, c := range cmds {
		opts := map[string]bool{}
		for _, o := range c.Options {
			key := o.Name + ":" + o.Type.String()
			if o.Autocomplete {
				key += ":auto"
			}
			if len(o.Choices) >= 3 {
				key += ":choices"
			}
			if o.Required {
				key += ":required"
			}
			opts[key] = true
		}
		byName[c.Name] = opts
	}
	for cmd, want := range map[string][]string{
		"research": {"symbols:String:required", "depth:String:choices", "model:String:auto", "public:Boolean"},
		"scan":     {"watchlist:String:auto:required", "depth:String:choices", "public:Boolean"},
		"receipt":  {"id:String:required"},
		"link":     {"code:String"},
		"ask":      {"question:String:required", "cap:String", "ask:String", "model:String:auto"},
	} {
		for _, w := range want {
			if !byName[cmd][w] {
				t.Errorf("/%s lacks option %s: %v", cmd, w, byName[cmd])
			}
		}
	}
	gw := b.fake.Gateway()
	if gw.Identifies != 1 || gw.LastIdentifyToken != "Bot "+b.fake.BotToken || gw.Intents != 0 {
		t.Fatalf("gateway = %+v", gw)
	}
	b.fake.Wait(t, "a heartbeat ACK", 5*time.Second, func() bool { return b.fake.Gateway().Acks > 0 })

	choices := func(cb discordtest.Callback) []string {
		var d struct {
			Choices []struct{ Name, Value string }
		}
		if err := json.Unmarshal(cb.Data, &d); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range d.Choices {
			out = append(out, c.Value)
		}
		return out
	}
	in := b.fake.Autocomplete(alice, channel, "research", discordtest.String("symbols", "NVDA"), discordtest.Focused("model", "GPT"))
	if got := choices(b.send(t, in)); strings.Join(got, ",") != "gpt-test" {
		t.Fatalf("model choices for GPT = %v", got)
	}
	in = b.fake.Autocomplete(alice, channel, "scan", discordtest.Focused("watchlist", ""))
	if got := choices(b.send(t, in)); len(got) == 0 || len(got) > 25 {
		t.Fatalf("watchlist choices = %v", got)
	}
	// A user's own watchlists come first; nobody else sees them.
	if _, err := b.bed.Engine.WatchlistAdd(t.Context(), identity(alice), "chips", []string{"NVDA", "AMD"}); err != nil {
		t.Fatal(err)
	}
	in = b.fake.Autocomplete(alice, channel, "scan", discordtest.Focused("watchlist", ""))
	if got := choices(b.send(t, in)); len(got) == 0 || got[0] != "chips" {
		t.Fatalf("alice's watchlist choices = %v", got)
	}
	in = b.fake.Autocomplete(bob, channel, "scan", discordtest.Focused("watchlist", "chi"))
	if got := choices(b.send(t, in)); len(got) != 0 {
		t.Fatalf("bob sees %v", got)
	}
}

// TestRetryAfter: a 429 comes back at once as *bots.RetryAfterError with
// Discord's wait (no sleep inside the call); the next edit in the same
// bucket is held back without a request, from the rate-limit headers; the
// outbox delivers the final once the wait is over.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}})
	d := research.Destination{Platform: "discord", ChatID: channel.Channel}
	id, err := b.ad.Send(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "started", Text: "0%"})
	if err != nil {
		t.Fatal(err)
	}
	d.MessageID = id
	b.fake.Script429(discordtest.RouteChannelEdit, 1, 2*time.Second)
	began := time.Now()
	err = b.ad.Edit(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "halfway", Text: "50%"})
	var ra *bots.RetryAfterError
	if !asRetry(err, &ra) || ra.Wait < 1500*time.Millisecond || ra.Wait > 2*time.Second {
		t.Fatalf("429: %v, want a RetryAfterError of about 2s", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Fatalf("the 429 took %s to come back: something slept", took)
	}
	n := len(b.fake.Requests())
	if err := b.ad.Edit(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "later", Text: "60%"}); !asRetry(err, &ra) {
		t.Fatalf("edit into an exhausted bucket: %v, want a RetryAfterError", err)
	}
	if len(b.fake.Requests()) != n {
		t.Fatal("an edit went out into a bucket Discord said was empty")
	}
	b.ob.Submit(d, bots.View{Kind: bots.KindFinal, Title: "done", Text: "100%", Final: true})
	m := b.channelMessage(t, id, "the final after the wait", func(m discordtest.Message) bool { return title(m) == "done" })
	if took := time.Since(began); took < 1500*time.Millisecond {
		t.Fatalf("the final went out %s after the 429", took)
	}
	if b.fake.Limited() != 1 || m.Edits != 1 {
		t.Fatalf("%d 429s, %d edits; want 1 and 1", b.fake.Limited(), m.Edits)
	}
	if strings.Contains(err.Error(), b.fake.BotToken) {
		t.Fatal("token in an error")
	}
}

// TestLongReportAndLink: a final report too long for embeds goes out within
// Discord's limits (the fake refuses anything over them) with the whole
// report attached as Markdown next to the chart; /link answers privately.
func TestLongReportAndLink(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}})
	d := research.Destination{Platform: "discord", ChatID: channel.Channel}
	id, err := b.ad.Send(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "Research NVDA: running", Text: "[█░░░░░░░░░] 10%",
		Buttons: [][]bots.Button{{{Label: "Cancel", Data: "r:rAAAAAAAAAAAAAAAA:cancel", Style: "danger"}}}})
	if err != nil {
		t.Fatal(err)
	}
	d.MessageID = id
	long := strings.Repeat("NVDA: RSI 14 = 55, SMA 50 above SMA 200; momentum *strong* @everyone.\n", 300)
	b.ob.Submit(d, bots.View{Kind: bots.KindFinal, Final: true, Title: "Research NVDA: succeeded", Text: long + research.Notice,
		Fields: []bots.Field{{Name: "Cost", Value: "Charged $0.0012 from your Credit (ledger entry 7)"}},
		Image:  []byte("\x89PNG\r\n\x1a\nfake"), ImageName: "chart-rAAAAAAAAAAAAAAAA.png", Notice: research.Notice,
		Buttons: [][]bots.Button{{{Label: "Receipt", URL: "http://forgebot.test/r/abc"}}}})
	final := b.channelMessage(t, id, "the final", func(m discordtest.Message) bool { return strings.Contains(title(m), "succeeded") })
	names := map[string]string{}
	for _, a := range final.Attachments {
		names[a.Filename] = string(a.Data)
	}
	if md := names["report-rAAAAAAAAAAAAAAAA.md"]; !strings.Contains(md, long) || !strings.Contains(md, "ledger entry 7") {
		t.Fatalf("no whole Markdown report among %d attachments", len(final.Attachments))
	}
	if _, ok := names["chart-rAAAAAAAAAAAAAAAA.png"]; !ok {
		t.Fatal("no chart")
	}
	if got := labels(final); len(got) != 1 || got[0] != "Receipt" {
		t.Fatalf("final buttons = %v", got)
	}

	in, cb := b.command(t, alice, "link")
	if flags, _ := callbackData(t, cb); flags&64 == 0 {
		t.Fatal("a link code was shown to the channel")
	}
	if m := b.original(t, in); !strings.Contains(text(m), "/link ") {
		t.Fatalf("/link = %q", text(m))
	}
}

// TestGlobalCommandsOverHTTP: without a guild the commands are registered
// globally; an HTTP-interactions adapter opens no gateway session.
func TestGlobalCommandsOverHTTP(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t, testbed.Options{NoWorkers: true})
	fake := discordtest.New(t, discordtest.Options{})
	conv := &bots.Conversation{Engine: bed.Engine, Ledger: bed.Store, Runs: bed.Store}
	ad, err := discord.New(discord.Config{Token: fake.BotToken, AppID: fake.AppID, APIURL: fake.URL, HTTPInteractions: true,
		PublicKey: hexKey(fake)}, conv)
	if err != nil {
		t.Fatal(err)
	}
	if err := ad.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer ad.Stop(t.Context())
	if got := len(fake.Commands("global")); got != len(bots.Commands) {
		t.Fatalf("%d global commands, want %d", got, len(bots.Commands))
	}
	if gw := fake.Gateway(); gw.Connections != 0 {
		t.Fatalf("HTTP interactions opened the gateway: %+v", gw)
	}
}

func ExampleConfig_Validate() {
	err := discord.Config{Token: "abc", AppID: "my-app"}.Validate()
	fmt.Println(err)
	// Output: discord: application id "my-app" is not a Discord id
}

// menuOptions lists a select menu's option labels.
func menuOptions(m discordtest.Message, customID string) string {
	var out []string
	for _, row := range m.Components {
		for _, c := range row {
			if c.Type == 3 && c.CustomID == customID {
				for _, o := range c.Options {
					out = append(out, o.Label)
				}
			}
		}
	}
	return strings.Join(out, "|")
}

// TestDepthSelect: the quote's depth is changed with a select menu; the
// choice's payload is verified like a button's, and the quote is redone.
func TestDepthSelect(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}})
	b.bed.Fund(identity(alice), billing.BucketCredit, billing.Micro)
	qin, _ := b.command(t, alice, "research", discordtest.String("symbols", "AAPL"))
	quote := b.original(t, qin)
	var value string
	for _, row := range quote.Components {
		for _, c := range row {
			for _, o := range c.Options {
				if c.CustomID == "select:depth" && o.Label == "Deep" {
					value = o.Value
				}
			}
		}
	}
	if value == "" {
		t.Fatalf("no Deep option: %+v", quote.Components)
	}
	// Bob's choice is refused; a forged value is refused.
	for _, tc := range []struct {
		who   discordtest.User
		value string
	}{{bob, value}, {alice, "q:qAAAAAAAAAAAAAAAA:deep"}} {
		in := b.fake.Choose(tc.who, guild, quote, "select:depth", tc.value)
		b.send(t, in)
		if m, _ := b.fake.Original(qin.ID); !strings.Contains(title(m), "quick") {
			t.Fatalf("a refused choice changed the quote: %q", title(m))
		}
	}
	in := b.fake.Choose(alice, guild, quote, "select:depth", value)
	if cb := b.send(t, in); cb.Type != 7 {
		t.Fatalf("choice answered with type %d, want 7 (update the quote)", cb.Type)
	}
	b.fake.Wait(t, "the deep quote", wait, func() bool {
		m, _ := b.fake.Original(qin.ID)
		return strings.Contains(title(m), "deep")
	})
}
