package telegram_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// figureRE finds what the group must never read: a balance, a shortfall.
var figureRE = regexp.MustCompile(`(?i)available|short by|you have \$|left after the hold|posted|\$1\.00|\$0\.99`)

// TestGroupRunKeepsFiguresPrivate: a group run on Telegram. The quote in
// the group shows the model, the depth, this run's cost and hold, but no
// balance; the owner gets the full quote (with the balance) in a private
// chat. /balance in the group goes privately. A member whose balance is too
// low sees no shortfall in the group, and one who never started the bot
// gets a card without figures and a button opening the private chat. The
// run's progress and final messages in the group carry no balance either.
func TestGroupRunKeepsFiguresPrivate(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{Pace: time.Millisecond}, start: true})
	b.bed.Fund(who(alice), billing.BucketCredit, billing.Micro) // $1.00
	b.bed.Fund(who(bob), billing.BucketCredit, 10)              // $0.00001
	carol := telegramtest.User{ID: 1003, FirstName: "Carol"}
	b.bed.Fund(who(carol), billing.BucketCredit, 10)
	b.fake.BlockDM(carol.ID) // never started the bot

	b.fake.SendText(group, alice, "/research@forgebot_test_bot AAPL quick")
	quote := b.reply(t, group.ID, "Quote: quick research on AAPL")
	if !strings.Contains(quote.Visible, "Estimated cost") || !strings.Contains(quote.Visible, "held") {
		t.Fatalf("the group's quote lost this run's cost:\n%s", quote.Visible)
	}
	private := b.reply(t, alice.ID, "Quote: quick research on AAPL")
	if !strings.Contains(private.Visible, "$1.00 available") {
		t.Fatalf("alice's private copy has no balance:\n%s", private.Visible)
	}

	b.fake.SendText(group, alice, "/balance")
	b.reply(t, alice.ID, "Your balance")
	b.reply(t, group.ID, "I sent you the answer in a private chat")

	b.fake.SendText(group, bob, "/research AAPL deep")
	b.reply(t, group.ID, "does not cover this run")
	if m := b.reply(t, bob.ID, "short by"); !strings.Contains(m.Visible, "you have $0.00001") {
		t.Fatalf("bob's private shortfall:\n%s", m.Visible)
	}

	b.fake.SendText(group, carol, "/research MSFT deep")
	card := b.reply(t, group.ID, "open a private chat with me and press Start")
	link := ""
	for _, btn := range card.Buttons() {
		if strings.HasPrefix(btn.URL, "https://t.me/forgebot_test_bot?start=") {
			link = btn.URL
		}
	}
	if link == "" {
		t.Fatalf("no button opening the private chat on %s", card.Markup)
	}

	// Alice runs it: progress and final in the group.
	q := b.fake.Press(group, alice, quote.ID, button(t, quote, "Confirm"))
	b.fake.WaitAnswer(t, q)
	final := b.final(t, group.ID, quote.ID)
	if !strings.Contains(final.Visible, "Charged") {
		t.Fatalf("final = %s", final.Visible)
	}

	for _, m := range b.fake.Messages(group.ID) {
		if loc := figureRE.FindStringIndex(m.Visible); loc != nil {
			t.Errorf("a group message shows %q:\n%s", m.Visible[loc[0]:loc[1]], m.Visible)
		}
	}
	for _, c := range b.fake.Calls("") {
		if c.Int("chat_id") == group.ID && figureRE.MatchString(c.Fields["text"]+c.Fields["caption"]) {
			t.Errorf("a %s call to the group carries a figure: %q", c.Method, c.Fields["text"])
		}
	}
	b.bed.CheckSettled()
}
