package telegram_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

var codeRE = regexp.MustCompile(`/link ([A-Z0-9]{8})`)

// TestLinkAcrossPlatforms: /link on Telegram shows a code; redeemed with
// /link CODE from another platform's identity, both identities see and pay
// from one wallet.
func TestLinkAcrossPlatforms(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}, start: true})
	b.bed.Fund(who(alice), billing.BucketCredit, 3*billing.Micro)
	dm := telegramtest.Private(alice)
	b.fake.SendText(dm, alice, "/link")
	code := codeRE.FindStringSubmatch(b.reply(t, dm.ID, "On your other platform, send").Visible)
	if code == nil {
		t.Fatal("no code")
	}

	onDiscord := billing.Identity{Platform: "discord", ExternalID: "9001"}
	say := func(text string) bots.Reply {
		t.Helper()
		rs := b.conv.Handle(t.Context(), bots.Incoming{Identity: onDiscord, Chat: bots.Chat{Platform: "discord", ID: "d1"}, Text: text, MessageID: "m1"})
		if len(rs) != 1 {
			t.Fatalf("%s: %d replies", text, len(rs))
		}
		return rs[0]
	}
	if r := say("/link " + code[1]); !strings.Contains(r.View.Text, "Linked") {
		t.Fatalf("redeem = %+v", r.View)
	}
	if r := say("/balance"); !strings.Contains(r.View.Fields[0].Value, "$3.00 available") {
		t.Fatalf("discord balance = %+v", r.View.Fields)
	}
	// Discord spends from the shared wallet; Telegram sees the hold.
	q := say("/research AAPL")
	var confirm string
	for _, btn := range q.View.Buttons[0] {
		if strings.HasPrefix(btn.Label, "Confirm") {
			confirm = btn.Data
		}
	}
	rs := b.conv.Handle(t.Context(), bots.Incoming{Identity: onDiscord, Chat: bots.Chat{Platform: "discord", ID: "d1"}, Button: confirm, MessageID: "m2"})
	if len(rs) != 1 || !strings.HasPrefix(rs[0].Alert, "Confirmed") {
		t.Fatalf("discord confirm = %+v", rs)
	}
	b.fake.SendText(dm, alice, "/balance")
	bal := b.reply(t, dm.ID, "Your balance")
	if !strings.Contains(bal.Visible, "held)") || strings.Contains(bal.Visible, "Credit (official routes): $3.00 available") {
		t.Fatalf("telegram balance after the discord hold:\n%s", bal.Visible)
	}
}

// TestPrivateAnswersInGroups: /link in a group sends the code to the
// user's private chat, never to the group; a user the bot cannot message is
// told how to start a private chat, and gets no code anywhere.
func TestPrivateAnswersInGroups(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}, start: true})
	b.fake.BlockDM(bob.ID)
	b.fake.SendText(group, alice, "/link")
	b.reply(t, group.ID, "I sent you the answer in a private chat")
	if codeRE.FindString(b.reply(t, alice.ID, "On your other platform").Visible) == "" {
		t.Fatal("no code in the private chat")
	}
	b.fake.SendText(group, bob, "/link@forgebot_test_bot")
	b.reply(t, group.ID, "open a private chat with me")
	for _, m := range b.fake.Messages(group.ID) {
		if codeRE.MatchString(m.Visible) {
			t.Fatalf("a link code was shown in the group: %q", m.Visible)
		}
	}
	if len(b.fake.Messages(bob.ID)) != 0 {
		t.Fatal("bob's private chat has messages")
	}
}
