package telegram_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// TestAskInGroup: /ask in a group quotes an agent run; confirmed, its card
// asks to continue at the cap with Continue +$X, Wrap up now and Cancel; a
// member's press is refused with an alert; the owner's Continue goes on to
// the answer, with its steps, in the final message.
func TestAskInGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{Pace: time.Millisecond}, start: true})
	b.bed.Fund(who(alice), billing.BucketCredit, billing.Micro)
	b.fake.SendText(group, alice, "/ask@forgebot_test_bot is NVDA overbought against the other semis? cap:0.002")
	quote := b.reply(t, group.ID, "Quote: Ask: is NVDA overbought")
	q := b.fake.Press(group, alice, quote.ID, button(t, quote, "Confirm"))
	b.fake.WaitAnswer(t, q)
	var card telegramtest.Message
	b.fake.Wait(t, wait, "the asking card", func() bool {
		card, _ = b.fake.Message(group.ID, quote.ID)
		return strings.Contains(card.Markup, "Continue +")
	})
	if !strings.Contains(card.Markup, "Wrap up now") || !strings.Contains(card.Text, "Paused to ask you") {
		t.Fatalf("asking card = %q %s", card.Text, card.Markup)
	}
	q = b.fake.Press(group, bob, quote.ID, button(t, card, "Continue"))
	if ans := b.fake.WaitAnswer(t, q); !strings.Contains(ans.Fields["text"], "Only the person") || ans.Fields["show_alert"] != "true" {
		t.Fatalf("bob's Continue = %v", ans.Fields)
	}
	q = b.fake.Press(group, alice, quote.ID, button(t, card, "Continue"))
	if ans := b.fake.WaitAnswer(t, q); !strings.Contains(ans.Fields["text"], "more held") {
		t.Fatalf("alice's Continue = %v", ans.Fields)
	}
	final := b.final(t, group.ID, quote.ID)
	for _, want := range []string{"succeeded", "Question\nis NVDA overbought", "Answer\n", "Steps\n", "model: answer"} {
		if !strings.Contains(final.Visible, want) {
			t.Errorf("final lacks %q:\n%s", want, final.Visible)
		}
	}
	b.bed.CheckSettled()
}
