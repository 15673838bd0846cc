package telegram_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/telegram"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
)

// TestOddPresses: garbage payloads, an empty payload, presses on messages
// Telegram no longer serves (InaccessibleMessage) and on inline messages are
// all answered, none crashes, and only a valid owner's press acts.
func TestOddPresses(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{Pace: 3 * time.Millisecond}, start: true})
	b.bed.Fund(who(alice), billing.BucketCredit, billing.Micro)
	dm := telegramtest.Private(alice)
	b.fake.SendText(dm, alice, "/research AAPL")
	quote := b.reply(t, dm.ID, "Quote: quick research on AAPL")

	for _, data := range []string{"garbage", "q:" + strings.Repeat("A", 62), "r:rAAAAAAAAAAAAAAAA:cancel", "q:../../etc:confirm"} {
		q := b.fake.Press(dm, alice, quote.ID, data)
		if ans := b.fake.WaitAnswer(t, q); ans.Fields["show_alert"] != "true" || ans.Fields["text"] == "" || strings.Contains(ans.Fields["text"], "ref ") {
			t.Errorf("payload %q answered %v, want a plain refusal", data, ans.Fields)
		}
	}
	if q := b.fake.Press(dm, alice, quote.ID, ""); b.fake.WaitAnswer(t, q).Fields["text"] != "" {
		t.Error("an empty payload got a text")
	}
	b.fake.Queue(map[string]any{"callback_query": map[string]any{"id": "inline1", "from": alice, "chat_instance": "x",
		"inline_message_id": "AAAA", "data": button(t, quote, "Confirm")}})
	if ans := b.fake.WaitAnswer(t, "inline1"); !strings.Contains(ans.Fields["text"], "does not work here") {
		t.Errorf("inline press answered %v", ans.Fields)
	}
	if b.bed.OpenHolds() != 0 || len(b.edits(dm.ID, quote.ID)) != 0 {
		t.Fatal("odd presses changed something")
	}

	// A run to its end, then presses on its old messages.
	confirm := button(t, quote, "Confirm")
	b.fake.WaitAnswer(t, b.fake.Press(dm, alice, quote.ID, confirm))
	var prog telegramtest.Message
	b.fake.Wait(t, wait, "the progress message", func() bool {
		prog, _ = b.fake.Message(dm.ID, quote.ID)
		return strings.Contains(prog.Markup, `"Pause"`)
	})
	b.final(t, dm.ID, quote.ID)
	if ans := b.fake.WaitAnswer(t, b.fake.PressOld(dm, alice, quote.ID, confirm)); ans.Fields["text"] != "Already confirmed." {
		t.Errorf("old confirm answered %v", ans.Fields)
	}
	if ans := b.fake.WaitAnswer(t, b.fake.PressOld(dm, alice, quote.ID, button(t, prog, "Cancel"))); !strings.Contains(ans.Fields["text"], "no longer possible") {
		t.Errorf("old cancel answered %v", ans.Fields)
	}
	if final, _ := b.fake.Message(dm.ID, quote.ID); !strings.Contains(final.Visible, "succeeded") {
		t.Fatalf("the final message changed: %s", final.Visible)
	}
	b.bed.CheckLedger()
}

// TestGoneQuote: Confirm on a quote message that was deleted posts the
// progress as a new message, moves the run there, and the final arrives.
func TestGoneQuote(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{Pace: 3 * time.Millisecond}, start: true})
	b.bed.Fund(who(alice), billing.BucketCredit, billing.Micro)
	dm := telegramtest.Private(alice)
	b.fake.SendText(dm, alice, "/research MSFT")
	quote := b.reply(t, dm.ID, "Quote: quick research on MSFT")
	b.fake.Forget(dm.ID, quote.ID)
	q := b.fake.PressOld(dm, alice, quote.ID, button(t, quote, "Confirm"))
	if ans := b.fake.WaitAnswer(t, q); !strings.HasPrefix(ans.Fields["text"], "Confirmed") {
		t.Fatalf("confirm answered %v", ans.Fields)
	}
	prog := b.reply(t, dm.ID, "Research MSFT (quick)")
	if prog.ID == quote.ID {
		t.Fatal("no new message")
	}
	b.fake.Wait(t, wait, "a final message", func() bool {
		for _, m := range b.fake.Messages(dm.ID) {
			if m.ID != quote.ID && m.ParseMode == "HTML" && strings.Contains(m.Visible, "MSFT: succeeded") {
				return true
			}
		}
		return false
	})
	b.bed.CheckLedger()
}

// panicky is the conversation with a bug on "/boom" and one payload.
type panicky struct{ *bots.Conversation }

func (p panicky) Handle(ctx context.Context, in bots.Incoming) []bots.Reply {
	if in.Text == "/boom" || in.Button == "q:qBOOMBOOMBOOMBOOMB:confirm" {
		panic("boom with " + telegramtest.Token)
	}
	return p.Conversation.Handle(ctx, in)
}

// TestPanicRecovered: a panic while handling a message or a press is
// logged with a reference (and without the token) and the user is told.
func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	b := setup(t, options{start: true, conv: func(c *bots.Conversation) telegram.Conversation { return panicky{c} }})
	b.fake.SendText(group, alice, "/boom")
	sorry := b.reply(t, group.ID, "Something went wrong (ref ")
	ref := regexp.MustCompile(`ref ([0-9a-f]{8})`).FindStringSubmatch(sorry.Visible)
	if ref == nil || !strings.Contains(b.logs.String(), "ref="+ref[1]) || !strings.Contains(b.logs.String(), "panicked") {
		t.Fatalf("apology %q; logs:\n%s", sorry.Visible, b.logs.String())
	}
	q := b.fake.Press(group, alice, sorry.ID, "q:qBOOMBOOMBOOMBOOMB:confirm")
	if ans := b.fake.WaitAnswer(t, q); !strings.HasPrefix(ans.Fields["text"], "Something went wrong (ref ") || ans.Fields["show_alert"] != "true" {
		t.Fatalf("press after a panic answered %v", ans.Fields)
	}
	b.fake.SendText(group, alice, "/help")
	b.reply(t, group.ID, "You always see a quote first")
}

// TestAnonymousAdminRefused: a command sent as the group itself (an
// anonymous admin) has no person to bill and is refused.
func TestAnonymousAdminRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}, start: true})
	b.fake.Queue(map[string]any{"message": map[string]any{"message_id": 99, "date": time.Now().Unix(), "chat": group,
		"from":        telegramtest.User{ID: 1087968824, FirstName: "Group", Username: "GroupAnonymousBot", IsBot: true},
		"sender_chat": group, "text": "/research NVDA"}})
	b.reply(t, group.ID, "Send commands from your own account")
	if b.bed.OpenHolds() != 0 || strings.Contains(fmt.Sprint(b.fake.Calls("sendMessage")), "Quote") {
		t.Fatal("an anonymous admin got a quote")
	}
}

// gated is the conversation made slow for one user's presses: each waits,
// after saying so on entered, until release is closed.
type gated struct {
	*bots.Conversation
	user    billing.Identity
	entered chan time.Time
	release chan struct{}
}

func (g gated) Handle(ctx context.Context, in bots.Incoming) []bots.Reply {
	if in.Button != "" && in.Identity == g.user {
		select {
		case g.entered <- time.Now():
		default:
		}
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil
		}
	}
	return g.Conversation.Handle(ctx, in)
}

// TestLateRefusal: a press the conversation is slow to handle is answered
// (empty) within AnswerWithin, so the client stops spinning; the refusal
// that comes later cannot go in the answer any more and is posted in the
// group instead, naming the presser and replying to the pressed message.
// A refusal in time stays in the answer alone.
func TestLateRefusal(t *testing.T) {
	t.Parallel()
	const within = 300 * time.Millisecond
	g := gated{user: who(bob), entered: make(chan time.Time, 1), release: make(chan struct{})}
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}, start: true,
		config: func(c *telegram.Config) { c.AnswerWithin = within },
		conv:   func(c *bots.Conversation) telegram.Conversation { g.Conversation = c; return g }})
	b.bed.Fund(who(alice), billing.BucketCredit, billing.Micro)
	b.fake.SendText(group, alice, "/research NVDA")
	quote := b.reply(t, group.ID, "Quote: quick research on NVDA")

	q := b.fake.Press(group, bob, quote.ID, button(t, quote, "Confirm"))
	var entered time.Time
	select {
	case entered = <-g.entered:
	case <-time.After(wait):
		t.Fatal("bob's press never reached the conversation")
	}
	ans := b.fake.WaitAnswer(t, q) // the conversation is still held
	if ans.Fields["text"] != "" || !ans.OK() {
		t.Fatalf("the slow press was answered %v, want empty", ans.Fields)
	}
	if after := ans.At.Sub(entered); after > within+time.Second {
		t.Fatalf("the slow press was answered %s after it reached the conversation, want about %s", after, within)
	}

	close(g.release)
	late := b.reply(t, group.ID, "Only the person who started this")
	if late.ReplyTo != quote.ID || !strings.HasPrefix(late.Visible, "Bob: ") {
		t.Fatalf("the late refusal %q replies to %d, want to the quote %d naming Bob", late.Visible, late.ReplyTo, quote.ID)
	}
	if n := len(b.fake.Calls("answerCallbackQuery")); n != 1 {
		t.Fatalf("%d answers to one press", n)
	}

	// In time, the refusal is the answer's alert and nothing is posted.
	q = b.fake.Press(group, bob, quote.ID, button(t, quote, "Confirm"))
	if ans := b.fake.WaitAnswer(t, q); !strings.HasPrefix(ans.Fields["text"], "Only the person") || ans.Fields["show_alert"] != "true" {
		t.Fatalf("the press in time was answered %v", ans.Fields)
	}
	stop, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.ad.Stop(stop); err != nil { // waits for the handler
		t.Fatal(err)
	}
	posted := 0
	for _, m := range b.fake.Messages(group.ID) {
		if strings.Contains(m.Visible, "Only the person") {
			posted++
		}
	}
	if posted != 1 || len(b.edits(group.ID, quote.ID)) != 0 || b.bed.OpenHolds() != 0 {
		t.Fatalf("%d refusals posted, %d edits of the quote, %d holds; want 1, 0, 0", posted, len(b.edits(group.ID, quote.ID)), b.bed.OpenHolds())
	}
}

// lateEdit is the conversation whose confirm answer reaches the adapter only
// once the run's final went out: the press's edit of the quote (the run's
// "queued" card) comes after the final, as when another instance ran the
// run fast. It reports each EditRun's outcome.
type lateEdit struct {
	*bots.Conversation
	t      testing.TB
	b      **bundle
	edited chan bool
}

func (l lateEdit) Handle(ctx context.Context, in bots.Incoming) []bots.Reply {
	replies := l.Conversation.Handle(ctx, in)
	for _, r := range replies {
		if r.RunID != "" {
			chat, _ := strconv.ParseInt(in.Chat.ID, 10, 64)
			msg, _ := strconv.Atoi(in.MessageID)
			(*l.b).final(l.t, chat, msg)
		}
	}
	return replies
}

func (l lateEdit) EditRun(ctx context.Context, d research.Destination, runID string, version int64, edit func(context.Context) error) (bool, error) {
	sent, err := l.Conversation.EditRun(ctx, d, runID, version, edit)
	l.edited <- sent
	return sent, err
}

// TestConfirmEditAfterFinal: the confirm press's edit of its message goes
// through the outbox's per-run order, so an answer that arrives after the
// run's final (a fast run on another instance) does not put the "queued"
// card with live buttons back over the report.
func TestConfirmEditAfterFinal(t *testing.T) {
	t.Parallel()
	var b *bundle
	edited := make(chan bool, 1)
	b = setup(t, options{start: true, conv: func(c *bots.Conversation) telegram.Conversation {
		return lateEdit{Conversation: c, t: t, b: &b, edited: edited}
	}})
	b.bed.Fund(who(alice), billing.BucketCredit, billing.Micro)
	dm := telegramtest.Private(alice)
	b.fake.SendText(dm, alice, "/research AAPL")
	quote := b.reply(t, dm.ID, "Quote: quick research on AAPL")
	b.fake.Press(dm, alice, quote.ID, button(t, quote, "Confirm"))
	select {
	case sent := <-edited:
		if sent {
			t.Fatal("the press's card was edited over the run's final")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the press's edit did not go through the outbox's order")
	}
	if m, _ := b.fake.Message(dm.ID, quote.ID); !strings.Contains(m.Visible, research.Notice) || strings.Contains(m.Markup, `"Pause"`) {
		t.Fatalf("the message went back from its final: %s %s", m.Visible, m.Markup)
	}
	b.bed.CheckLedger()
}
