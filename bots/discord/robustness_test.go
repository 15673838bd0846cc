package discord_test

import (
	"context"
	"net/http"
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
)

// TestHTTPReplayHandledOnce: the same signed request posted twice inside
// the timestamp's window is handled once; the second post gets 401.
func TestHTTPReplayHandledOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, options{http: true, bed: testbed.Options{NoWorkers: true}})
	in := b.fake.Command(alice, channel, "help")
	sig, stamp := b.fake.Sign(in.Body, b.clock.Now(), nil)
	answered := `msg="discord interaction answered" interaction_id=` + in.ID

	resp, body, err := b.fake.PostRaw(b.endpoint, in.Body, sig, stamp)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "forgebot") {
		t.Fatalf("first post: %v %v %s", err, resp, body)
	}
	b.clock.Advance(time.Minute) // still inside the 5-minute window
	resp, body, err = b.fake.PostRaw(b.endpoint, in.Body, sig, stamp)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed post: %v %v %s, want 401", err, resp, body)
	}
	// Handling logs its answer before the endpoint answers, so a second
	// handling would be in the log by now.
	if n := strings.Count(b.logs.String(), answered); n != 1 {
		t.Fatalf("the interaction was handled %d times:\n%s", n, b.logs.String())
	}
	// Another interaction is still taken.
	other := b.fake.Command(alice, channel, "help")
	if cb := b.send(t, other); cb.Type != 4 {
		t.Fatalf("a new interaction after a replay: %+v", cb)
	}
}

var refRE = regexp.MustCompile(`\(ref ([0-9a-f]{8})\)`)

// ref reads the reference from s and checks the log has a panic line with it.
func (b *bundle) ref(t testing.TB, s string) string {
	t.Helper()
	m := refRE.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no reference in %q", s)
	}
	for _, line := range strings.Split(b.logs.String(), "\n") {
		if strings.Contains(line, "ref="+m[1]) && strings.Contains(line, "panicked") {
			return m[1]
		}
	}
	t.Fatalf("no panic logged with ref %s:\n%s", m[1], b.logs.String())
	return ""
}

// panickyLedger panics when a quote is made for bob, as a bug in the
// conversation's path would.
type panickyLedger struct{ research.Ledger }

func (l panickyLedger) EnsureAccount(ctx context.Context, id billing.Identity) (billing.AccountID, error) {
	if id == identity(bob) {
		panic("ledger bug")
	}
	return l.Ledger.EnsureAccount(ctx, id)
}

// TestPanicsRecovered: a panic in the conversation gets an apology with a reference that is in the log line; a
// panic in Send or Edit comes back as an error with a reference, and the
// outbox goroutine that called lives on. The panic value holds the bot
// token: checkMessages checks it never reaches the log.
func TestPanicsRecovered(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true},
		before:  func(bed *testbed.Bed, _ *bots.Conversation) { bed.Engine.Ledger = panickyLedger{bed.Store} },
		adapter: func(a *discord.Adapter) { discord.PanicOnRender(a, "boom") }})

	// In the conversation: bob's quote panics in the ledger.
	in, cb := b.command(t, bob, "research", discordtest.String("symbols", "NVDA"))
	sorry := b.original(t, in)
	if flags, _ := callbackData(t, cb); cb.Type != 4 || flags&64 == 0 || !strings.Contains(text(sorry), "Something went wrong (ref ") {
		t.Fatalf("after a panic in the conversation: type %d flags %d %q, want an ephemeral apology", cb.Type, flags, text(sorry))
	}
	b.ref(t, text(sorry))

	d := research.Destination{Platform: "discord", ChatID: channel.Channel}
	if _, err := b.ad.Send(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "boom", Text: "x"}); err == nil ||
		!strings.Contains(err.Error(), "send panicked") {
		t.Fatalf("Send of a view whose rendering panics: %v", err)
	} else {
		b.ref(t, err.Error())
	}
	id, err := b.ad.Send(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "fine", Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	d.MessageID = id
	if err := b.ad.Edit(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "boom", Text: "y"}); err == nil ||
		!strings.Contains(err.Error(), "edit panicked") {
		t.Fatalf("Edit of a view whose rendering panics: %v", err)
	} else {
		b.ref(t, err.Error())
	}

	// Through the outbox: the panicking view fails, the next is delivered.
	b.ob.Submit(d, bots.View{Kind: bots.KindProgress, Title: "boom", Text: "z"})
	b.logs.WaitFor(t, "op=edit", 2)
	b.ob.Submit(d, bots.View{Kind: bots.KindFinal, Final: true, Title: "after", Text: "still here"})
	b.channelMessage(t, id, "the view after a panic", func(m discordtest.Message) bool { return title(m) == "after" })
}

// TestHandlerPanicApology: a panic in the interaction handler outside the
// conversation (rendering its answer) gets an ephemeral apology whose
// reference is in the log line.
func TestHandlerPanicApology(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true},
		adapter: func(a *discord.Adapter) { discord.PanicOnRender(a, "forgebot") }}) // /help's title
	_, cb := b.command(t, alice, "help")
	flags, content := callbackData(t, cb)
	if cb.Type != 4 || flags&64 == 0 || !strings.HasPrefix(content, "Something went wrong (ref ") {
		t.Fatalf("a panic while rendering /help: type %d flags %d %q, want an ephemeral apology", cb.Type, flags, content)
	}
	b.ref(t, content)
	if !strings.Contains(b.logs.String(), "interaction handler panicked") {
		t.Fatalf("logs:\n%s", b.logs.String())
	}
	// The adapter still answers.
	if _, cb := b.command(t, alice, "balance"); cb.Type != 4 {
		t.Fatalf("after the panic: %+v", cb)
	}
}

// TestProgressMessageSkipsEmptyBucket: when Discord's headers say the
// channel's message bucket is empty for long, a confirmed run's progress
// message does not wait for it inside discordgo (a blocking sleep): it goes
// out at once as a public followup.
func TestProgressMessageSkipsEmptyBucket(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true},
		buckets: []discordtest.Bucket{{Route: discordtest.RouteChannelMessage, Limit: 1, Window: time.Minute}}})
	b.bed.Fund(identity(alice), billing.BucketCredit, billing.Micro)
	// Use the channel's one message this minute.
	if _, err := b.ad.Send(t.Context(), research.Destination{Platform: "discord", ChatID: channel.Channel},
		bots.View{Kind: bots.KindInfo, Title: "hello", Text: "x"}); err != nil {
		t.Fatal(err)
	}
	qin, _ := b.command(t, alice, "research", discordtest.String("symbols", "NVDA"))
	quote := b.original(t, qin)
	cin, _ := b.click(t, alice, quote, button(t, quote, "Confirm"))
	var progress discordtest.Message
	// Edited once the run has moved to it (the refreshed progress view).
	b.fake.Wait(t, "the progress message as a followup", wait, func() bool {
		for _, m := range b.fake.Followups(cin.ID) {
			if strings.Contains(title(m), "Research") && !m.Ephemeral && m.Edits > 0 {
				progress = m
				return true
			}
		}
		return false
	})
	for _, r := range b.fake.Requests() {
		if r.Route == discordtest.RouteChannelMessage && r.Status == http.StatusTooManyRequests {
			t.Errorf("a channel message went out into the empty bucket: %+v", r)
		}
	}
	run, err := b.bed.Store.Run(t.Context(), runOf(t, progress))
	if err != nil {
		t.Fatal(err)
	}
	if run.Request.Dest.MessageID != progress.ID || run.Request.Dest.Token == "" {
		t.Fatalf("the run reports to %+v, want the followup %s through its token", run.Request.Dest, progress.ID)
	}
}

// TestRefusedLinkButton: when Discord refuses a final's link button (here
// a local receipt URL), the final goes out again with the link in its text,
// by an edit through the bot token, through an interaction token, and in a
// new message.
func TestRefusedLinkButton(t *testing.T) {
	t.Parallel()
	const receipt = "http://127.0.0.1:8080/r/abc_def"
	b := setup(t, options{bed: testbed.Options{NoWorkers: true},
		refuseLink: func(url string) bool { return strings.HasPrefix(url, "http://127.0.0.1") }})
	final := func(name string) bots.View {
		return bots.View{Kind: bots.KindFinal, Final: true, Title: name, Text: "the report",
			Buttons: [][]bots.Button{{{Label: "Receipt", URL: receipt}}}}
	}
	wantLinkText := func(m discordtest.Message) {
		t.Helper()
		if len(m.Components) != 0 || !strings.Contains(m.Content, "Receipt: <"+receipt+">") || !strings.Contains(text(m), "the report") {
			t.Fatalf("message %s: content %q, components %+v; want the receipt as text", m.ID, m.Content, m.Components)
		}
	}

	// An edit with the bot token, through the outbox.
	d := research.Destination{Platform: "discord", ChatID: channel.Channel}
	id, err := b.ad.Send(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "running", Text: "50%"})
	if err != nil {
		t.Fatal(err)
	}
	d.MessageID = id
	b.ob.Submit(d, final("done"))
	wantLinkText(b.channelMessage(t, id, "the final", func(m discordtest.Message) bool { return title(m) == "done" }))

	// An edit through an interaction token.
	in, _ := b.command(t, alice, "help")
	orig := b.original(t, in)
	td := research.Destination{Platform: "discord", ChatID: channel.Channel, MessageID: orig.ID, Token: in.Token, When: b.clock.Now()}
	if err := b.ad.Edit(t.Context(), td, final("done by token")); err != nil {
		t.Fatal(err)
	}
	m, _ := b.fake.Message(orig.ID)
	wantLinkText(m)

	// A new message.
	nid, err := b.ad.Send(t.Context(), research.Destination{Platform: "discord", ChatID: channel.Channel}, final("sent"))
	if err != nil {
		t.Fatal(err)
	}
	m, _ = b.fake.Message(nid)
	wantLinkText(m)

	refused := 0
	for _, r := range b.fake.Requests() {
		if len(r.Refused) > 0 {
			refused++
			if r.Status != http.StatusBadRequest || r.Code != 50035 {
				t.Errorf("a refused link answered %d (code %d)", r.Status, r.Code)
			}
		}
	}
	if refused != 3 {
		t.Fatalf("%d requests had their link refused, want 3 (one per path)", refused)
	}
	if !strings.Contains(b.logs.String(), "link button refused") {
		t.Fatal("the refusal was not logged")
	}
}
