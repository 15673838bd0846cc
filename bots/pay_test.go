package bots_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
)

func payChat(t *testing.T) *chat {
	c := newChat(t, testbed.Options{})
	c.conv.Pay = &bots.Pay{Store: c.b.Store, Amounts: []billing.Money{billing.Micro, 5 * billing.Micro}, StarsPerUSD: 50,
		Welcome: billing.Welcome{Bucket: billing.BucketRouted, Amount: 100_000}, LowBalance: billing.Micro}
	return c
}

func TestWelcomeGrantOnce(t *testing.T) {
	t.Parallel()
	c := payChat(t)
	first := one(t, c.say(t, alice, "/help"))
	if !strings.HasPrefix(first.View.Text, "Welcome to forgebot! You got $0.10 of routed balance") || !strings.Contains(first.View.Text, "/research") {
		t.Fatalf("first reply = %q: want the welcome above the help", first.View.Text)
	}
	again := one(t, c.say(t, alice, "/help"))
	if strings.Contains(again.View.Text, "Welcome to forgebot!") {
		t.Fatal("welcomed twice")
	}
	acc, _ := c.b.Store.AccountOf(t.Context(), alice)
	bal, _ := c.b.Store.Balances(t.Context(), acc)
	if bal[billing.BucketRouted].Posted != 100_000 {
		t.Fatalf("routed = %s, want the $0.10 grant once", bal[billing.BucketRouted].Posted)
	}
	// The balance is private and offers the top-up buttons.
	b := one(t, c.say(t, alice, "/balance"))
	if !b.View.Private || button(t, b.View, "$5 routed") != "t:routed:5000000" {
		t.Fatalf("/balance = %+v", b.View)
	}
	// A top-up button for an amount not configured is refused.
	if r := one(t, c.press(t, alice, "t:credit:7000000", "m1")); !strings.Contains(r.Alert, "not one of the top-up amounts") {
		t.Fatalf("unlisted amount = %+v", r)
	}
	c.b.CheckLedger()
}

func TestLowBalanceOncePerCrossing(t *testing.T) {
	t.Parallel()
	c := payChat(t)
	c.conv.Pay.Welcome = billing.Welcome{}
	c.b.Fund(alice, billing.BucketCredit, billing.Micro) // exactly the threshold
	run := func(msg string) bots.View {
		q := one(t, c.say(t, alice, "/research NVDA quick"))
		one(t, c.conv.Handle(t.Context(), bots.Incoming{Identity: alice, Chat: group, Button: button(t, q.View, "Confirm"), MessageID: msg}))
		return c.screen.waitFinal(t, msg)
	}
	v := run("m-low-1")
	if !strings.Contains(v.Text, "Credit of this run's owner is now below $1.00") {
		t.Fatalf("first final = %q: want the low-balance note", v.Text)
	}
	// The final may be read by a group: it names no balance.
	acc, _ := c.b.Store.AccountOf(t.Context(), alice)
	bal, _ := c.b.Store.Balances(t.Context(), acc)
	if left := bal[billing.BucketCredit].Available; strings.Contains(v.Text, left.String()) {
		t.Fatalf("first final = %q names the balance left, %s", v.Text, left)
	}
	if button(t, v, "$5 Credit") != "t:credit:5000000" {
		t.Fatal("no top-up button on the low-balance note")
	}
	if v := run("m-low-2"); strings.Contains(v.Text, "is now below") {
		t.Fatalf("second final repeats the note: %q", v.Text)
	}
	c.b.CheckLedger()
}

// noteCheckout is a checkout that makes a link per offer.
type noteCheckout struct{}

func (noteCheckout) CreateCheckout(_ context.Context, o billing.Offer) (string, error) {
	return "https://checkout.test/" + o.Nonce, nil
}

// TestTopupButtonsOnlyWherePayable: with Stars only, a Discord user's
// /balance, /topup and short quote offer no button that could only answer
// "payments are not set up"; they name the operator's way instead. With a
// checkout link the same screens offer the buttons, and a Telegram user
// has them through Stars all along.
func TestTopupButtonsOnlyWherePayable(t *testing.T) {
	t.Parallel()
	c := payChat(t)
	c.conv.Pay.Welcome = billing.Welcome{}
	dave := billing.Identity{Platform: "discord", ExternalID: "77"}
	dm := bots.Chat{Platform: "discord", ID: "dm-77"}
	say := func(who billing.Identity, ch bots.Chat, text string) bots.View {
		return one(t, c.conv.Handle(t.Context(), bots.Incoming{Identity: who, Chat: ch, Text: text, MessageID: "m-" + text})).View
	}
	topups := func(v bots.View) int {
		n := 0
		for _, row := range v.Buttons {
			for _, b := range row {
				if strings.HasPrefix(b.Data, "t:") {
					n++
				}
			}
		}
		return n
	}
	for _, text := range []string{"/balance", "/topup", "/research NVDA quick"} {
		v := say(dave, dm, text)
		if topups(v) != 0 || strings.Contains(v.Text, "Top up with the buttons") {
			t.Errorf("%s on Discord without a checkout: %q with %d top-up buttons", text, v.Text, topups(v))
		}
		if text != "/balance" && !strings.Contains(v.Text, "example.test") {
			t.Errorf("%s on Discord without a checkout says %q: want the operator's way to top up", text, v.Text)
		}
	}
	tg := bots.Chat{Platform: "telegram", ID: "42"}
	if v := say(alice, tg, "/balance"); topups(v) != 4 {
		t.Errorf("/balance on Telegram with Stars: %d top-up buttons, want 4", topups(v))
	}
	c.conv.Pay.Checkout = noteCheckout{}
	for _, text := range []string{"/balance", "/topup", "/research NVDA quick"} {
		if v := say(dave, dm, text); topups(v) == 0 {
			t.Errorf("%s on Discord with a checkout: no top-up buttons in %+v", text, v)
		}
	}
}

// TestGrantOncePerDelivery: a /grant with no message id (a Discord slash
// command) is keyed by its delivery, so the same interaction delivered twice
// grants once, and a second command grants again.
func TestGrantOncePerDelivery(t *testing.T) {
	t.Parallel()
	c := payChat(t)
	c.conv.Pay.Welcome = billing.Welcome{}
	c.b.Engine.Admins = []billing.Identity{bob}
	grant := func(delivery string) {
		t.Helper()
		r := one(t, c.conv.Handle(t.Context(), bots.Incoming{Identity: bob, Chat: group, Text: "/grant telegram:42 1.00 credit beta", Delivery: delivery}))
		if r.Refused || r.View.Kind == bots.KindError || !strings.Contains(r.View.Text, "1.00") {
			t.Fatalf("grant %s = %+v", delivery, r)
		}
	}
	grant("i-1")
	grant("i-1") // the same interaction again
	acc, _ := c.b.Store.AccountOf(t.Context(), alice)
	bal, _ := c.b.Store.Balances(t.Context(), acc)
	if got := bal[billing.BucketCredit].Posted; got != billing.Micro {
		t.Fatalf("credit after one interaction delivered twice = %s, want $1.00", got)
	}
	grant("i-2")
	bal, _ = c.b.Store.Balances(t.Context(), acc)
	if got := bal[billing.BucketCredit].Posted; got != 2*billing.Micro {
		t.Fatalf("credit after a second interaction = %s, want $2.00", got)
	}
	c.b.CheckLedger()
}
