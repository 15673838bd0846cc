package telegram_test

import (
	"context"
	"log/slog"
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

var (
	alice = telegramtest.User{ID: 1001, FirstName: "Alice", Username: "alice"}
	bob   = telegramtest.User{ID: 1002, FirstName: "Bob"}
	group = telegramtest.Group(-100500, "traders")
)

func who(u telegramtest.User) billing.Identity {
	return billing.Identity{Platform: telegram.Platform, ExternalID: strconv.FormatInt(u.ID, 10)}
}

// bundle is one adapter on a fake Bot API, over the real conversation,
// engine and store.
type bundle struct {
	bed    *testbed.Bed
	fake   *telegramtest.Server
	conv   *bots.Conversation
	outbox *bots.Outbox
	ad     *telegram.Adapter
	events *testbed.Recorder
	logs   *testbed.Screen
	wait   time.Duration // how long helpers wait for the fake
}

type options struct {
	bed    testbed.Options
	config func(*telegram.Config)
	conv   func(*bots.Conversation) telegram.Conversation // wraps the conversation
	sink   func(next research.Sink) research.Sink         // wraps the engine's sink
	start  bool                                           // false: do not Start
	// shared keeps the chat budget in the bed's store (a PostgreSQL bed),
	// as instances of one bot on one database do.
	shared bool
}

// setup wires a bundle; the fake enforces Telegram's rate limits, and no
// log line may contain the token.
func setup(t testing.TB, o options) *bundle {
	t.Helper()
	b := &bundle{bed: testbed.New(t, o.bed), fake: telegramtest.New(t), events: testbed.NewRecorder(), logs: &testbed.Screen{}, wait: wait}
	b.fake.SetLimits(&telegramtest.TelegramLimits)
	log := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.outbox = bots.NewOutbox(log)
	b.conv = &bots.Conversation{Engine: b.bed.Engine, Ledger: b.bed.Store, Runs: b.bed.Store, Outbox: b.outbox, Log: log,
		TopUpHint: "Top up at example.test."}
	var sink research.Sink = research.SinkFunc(func(ev research.Event) {
		b.events.Publish(ev)
		b.conv.Publish(ev)
	})
	if o.sink != nil {
		sink = o.sink(sink)
	}
	b.bed.Engine.Sink = sink
	var conv telegram.Conversation = b.conv
	if o.conv != nil {
		conv = o.conv(b.conv)
	}
	// AnswerWithin (2 s in production) answers a slow press empty so the client stops spinning; a press
	// under -race on a loaded machine can take longer, and tests that read the press's note would then see
	// the empty answer. Tests of the safety net set their own.
	cfg := telegram.Config{Token: telegramtest.Token, APIURL: b.fake.URL, PollTimeout: 2 * time.Second, Log: log, AnswerWithin: 10 * time.Second}
	if o.shared {
		cfg.Rates = b.bed.Store.(bots.RateStore)
	}
	if o.config != nil {
		o.config(&cfg)
	}
	ad, err := telegram.New(cfg, conv)
	if err != nil {
		t.Fatal(err)
	}
	b.ad = ad
	b.outbox.Register(telegram.Platform, ad, telegram.Limits)
	ctx, cancel := context.WithCancel(context.Background())
	go b.outbox.Run(ctx)
	t.Cleanup(func() {
		stop, cancelStop := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelStop()
		if err := ad.Stop(stop); err != nil {
			t.Errorf("stop: %v", err)
		}
		cancel()
		if t.Failed() {
			for _, c := range b.fake.Calls("") {
				if c.Method != "getUpdates" {
					t.Logf("%s %s %d chat=%s msg=%d reply=%s %q %.60q", c.At.Format("05.000"), c.Method, c.Code, c.Fields["chat_id"], c.MessageID,
						c.Fields["reply_parameters"], c.Description, c.Fields["text"])
				}
			}
			t.Logf("logs:\n%s", b.logs.String())
		}
		if strings.Contains(b.logs.String(), telegramtest.Token) || strings.Contains(b.logs.String(), strings.Split(telegramtest.Token, ":")[1]) {
			t.Errorf("the bot token was logged:\n%s", b.logs.String())
		}
	})
	if o.start {
		if err := ad.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// wait bounds every wait on the fake: generous, because under -race with every package's tests on two
// cores a run can take tens of seconds; a hang still fails the test.
const wait = 60 * time.Second

// reply waits for the bot's message in chat whose visible text contains
// want, sent after the call index from, and returns it.
func (b *bundle) reply(t testing.TB, chat int64, want string) telegramtest.Message {
	t.Helper()
	var found telegramtest.Message
	b.fake.Wait(t, b.wait, "a message with "+want, func() bool {
		for _, c := range b.fake.Calls("sendMessage") {
			if c.OK() && c.Int("chat_id") == chat {
				if m, ok := b.fake.Message(chat, c.MessageID); ok && strings.Contains(m.Visible, want) {
					found = m
					return true
				}
			}
		}
		return false
	})
	return found
}

// button finds a button's callback data on a message.
func button(t testing.TB, m telegramtest.Message, label string) string {
	t.Helper()
	for _, b := range m.Buttons() {
		if strings.HasPrefix(b.Text, label) && b.CallbackData != "" {
			return b.CallbackData
		}
	}
	t.Fatalf("no %q button on message %d: %s", label, m.ID, m.Markup)
	return ""
}

// final waits until message id in chat shows a final view (HTML, the notice).
func (b *bundle) final(t testing.TB, chat int64, id int) telegramtest.Message {
	t.Helper()
	var m telegramtest.Message
	b.fake.Wait(t, b.wait, "the final message", func() bool {
		var ok bool
		m, ok = b.fake.Message(chat, id)
		return ok && m.ParseMode == "HTML" && strings.Contains(m.Visible, research.Notice)
	})
	return m
}

// edits counts the successful edits of a message.
func (b *bundle) edits(chat int64, id int) []telegramtest.Call {
	var out []telegramtest.Call
	for _, c := range b.fake.Calls("editMessageText") {
		if c.OK() && c.Int("chat_id") == chat && c.MessageID == id {
			out = append(out, c)
		}
	}
	return out
}

// runOf finds the run id in a message's run buttons.
func runOf(t testing.TB, m telegramtest.Message) string {
	t.Helper()
	for _, b := range m.Buttons() {
		if strings.HasPrefix(b.CallbackData, "r:") {
			return strings.Split(b.CallbackData, ":")[1]
		}
	}
	t.Fatalf("no run button on %s", m.Markup)
	return ""
}
