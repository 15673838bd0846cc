package telegram_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/telegram"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// starsBundle is a started adapter whose conversation takes Telegram Stars
// at 50 Stars a dollar; bob is an admin.
func starsBundle(t *testing.T) *bundle {
	t.Helper()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true, Admins: []billing.Identity{who(bob)}}})
	b.conv.Pay = &bots.Pay{Store: b.bed.Store, Amounts: []billing.Money{billing.Micro, 5 * billing.Micro, 20 * billing.Micro},
		StarsPerUSD: 50, Refunders: map[string]bots.Refunder{billing.ProviderStars: b.ad}, Now: b.bed.Clock.Now}
	if err := b.ad.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return b
}

// invoice asks for a $5.00 Credit top-up with the buttons and returns the invoice sent.
func (b *bundle) invoice(t *testing.T, u telegramtest.User) telegramtest.Invoice {
	t.Helper()
	chat := telegramtest.Private(u)
	before := len(b.fake.Calls("sendInvoice"))
	b.fake.SendText(chat, u, "/topup")
	menu := b.reply(t, chat.ID, "Pick a bucket and an amount")
	if !strings.Contains(menu.Visible, "Credit pays official model routes") || !strings.Contains(menu.Visible, "50 Stars per $1.00") {
		t.Fatalf("/topup says %q: want what each bucket pays for and the Stars price", menu.Visible)
	}
	b.fake.Press(chat, u, menu.ID, button(t, menu, "$5 Credit"))
	var inv telegramtest.Invoice
	b.fake.Wait(t, b.wait, "an invoice", func() bool {
		calls := b.fake.Calls("sendInvoice")
		if len(calls) <= before || !calls[len(calls)-1].OK() {
			return false
		}
		m, ok := b.fake.Message(chat.ID, calls[len(calls)-1].MessageID)
		if ok {
			inv = *m.Invoice
		}
		return ok
	})
	return inv
}

func TestStarsPurchase(t *testing.T) {
	t.Parallel()
	b := starsBundle(t)
	chat := telegramtest.Private(alice)
	inv := b.invoice(t, alice)
	acc, err := b.bed.Store.AccountOf(t.Context(), who(alice))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(inv.Payload, ":")
	if inv.Currency != "XTR" || inv.Total != 250 || inv.ProviderToken != "" || len(parts) != 5 ||
		parts[1] != strconv.FormatInt(int64(acc), 10) || parts[2] != "credit" || parts[3] != "5000000" || len(parts[4]) < 22 {
		t.Fatalf("invoice = %+v: want 250 XTR naming account %d, credit, $5.00 and a nonce", inv, acc)
	}

	// Tampered, foreign and mispriced payloads are refused at pre-checkout, with a reason.
	for _, tc := range []struct {
		from           telegramtest.User
		payload        string
		total          int
		want           string
		name, currency string
	}{
		{alice, strings.Replace(inv.Payload, ":5000000:", ":20000000:", 1), 250, "altered", "amount edited", "XTR"},
		{alice, strings.Replace(inv.Payload, ":credit:", ":routed:", 1), 250, "altered", "bucket edited", "XTR"},
		{alice, inv.Payload[:len(inv.Payload)-2] + "xx", 250, "unknown", "nonce edited", "XTR"},
		{alice, inv.Payload, 1, "price", "total edited", "XTR"},
		{alice, "garbage", 250, "not valid", "not ours", "XTR"},
		{bob, inv.Payload, 250, "someone else", "foreign payer", "XTR"},
	} {
		a := b.fake.WaitCheckout(t, b.fake.PreCheckout(tc.from, tc.payload, tc.currency, tc.total))
		if a.OK || !strings.Contains(a.Error, tc.want) {
			t.Errorf("%s: pre-checkout answered %+v, want a refusal saying %q", tc.name, a, tc.want)
		}
	}
	a := b.fake.WaitCheckout(t, b.fake.PreCheckout(alice, inv.Payload, "XTR", 250))
	if !a.OK || a.After >= 10*time.Second {
		t.Fatalf("pre-checkout of the real invoice = %+v, want ok within 10 s", a)
	}
	charge := b.fake.Pay(chat, alice, inv.Payload, "XTR", 250)
	got := b.reply(t, chat.ID, "Payment received")
	if !strings.Contains(got.Visible, "$5.00 added to your Credit") || !strings.Contains(got.Visible, "stars:"+charge) ||
		!strings.Contains(got.Visible, "ledger entry #") || !strings.Contains(got.Visible, "Credit: $5.00 available") {
		t.Fatalf("payment reply = %q", got.Visible)
	}
	// A replayed successful_payment is credited once.
	b.fake.Repay(chat, alice, inv.Payload, "XTR", 250, charge)
	b.logs.WaitFor(t, "payment replayed", 1)
	bal, _ := b.bed.Store.Balances(t.Context(), acc)
	if bal[billing.BucketCredit].Posted != 5*billing.Micro {
		t.Fatalf("credit after a replayed payment: %s, want $5.00", bal[billing.BucketCredit].Posted)
	}
	// The paid invoice cannot be paid again.
	if a := b.fake.WaitCheckout(t, b.fake.PreCheckout(alice, inv.Payload, "XTR", 250)); a.OK || !strings.Contains(a.Error, "paid already") {
		t.Fatalf("pre-checkout of a paid invoice = %+v", a)
	}
	// An amount outside the list is refused and nothing is offered.
	n := len(b.fake.Calls("sendInvoice"))
	b.fake.SendText(chat, alice, "/topup credit 7")
	b.reply(t, chat.ID, "$7.00 is not one of the top-up amounts")
	if len(b.fake.Calls("sendInvoice")) != n {
		t.Fatal("an invoice was sent for an amount outside the list")
	}
	// A stale invoice (its offer past its hour) is refused at pre-checkout.
	stale := b.invoice(t, alice)
	b.bed.Clock.Advance(61 * time.Minute)
	if a := b.fake.WaitCheckout(t, b.fake.PreCheckout(alice, stale.Payload, "XTR", stale.Total)); a.OK || !strings.Contains(a.Error, "expired") {
		t.Fatalf("pre-checkout of a stale invoice = %+v, want a refusal saying it expired", a)
	}
	if bal, _ := b.bed.Store.Balances(t.Context(), acc); bal[billing.BucketCredit].Posted != 5*billing.Micro {
		t.Fatalf("credit after a refused stale invoice: %s", bal[billing.BucketCredit].Posted)
	}
	// /usage shows the top-up.
	b.fake.SendText(chat, alice, "/usage")
	if u := b.reply(t, chat.ID, "Top-ups, refunds and grants"); !strings.Contains(u.Visible, "topup $5.00 credit  stars:"+charge) {
		t.Fatalf("/usage = %q", u.Visible)
	}
	b.bed.CheckLedger()
}

func TestStarsRefundAfterPartialSpend(t *testing.T) {
	t.Parallel()
	b := starsBundle(t)
	chat := telegramtest.Private(alice)
	inv := b.invoice(t, alice)
	if a := b.fake.WaitCheckout(t, b.fake.PreCheckout(alice, inv.Payload, "XTR", inv.Total)); !a.OK {
		t.Fatalf("pre-checkout = %+v", a)
	}
	charge := b.fake.Pay(chat, alice, inv.Payload, "XTR", inv.Total)
	b.reply(t, chat.ID, "Payment received")
	acc, _ := b.bed.Store.AccountOf(t.Context(), who(alice))
	// $3.00 of the $5.00 is spent.
	h, err := b.bed.Store.PlaceHold(t.Context(), billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: 3 * billing.Micro,
		TTL: time.Hour, Key: "spend", Reference: "run:test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.bed.Store.CaptureHold(t.Context(), billing.CaptureRequest{HoldID: h.ID, Amount: 3 * billing.Micro, Key: "spend-capture"}); err != nil {
		t.Fatal(err)
	}

	// A quote made before the refund, while $2.00 is left.
	b.fake.SendText(chat, alice, "/research AAPL")
	before := b.reply(t, chat.ID, "Quote: quick research on AAPL")

	// Only an admin refunds; unknown charges are named.
	b.fake.SendText(chat, alice, "/refund "+charge)
	b.reply(t, chat.ID, "Only an admin can refund")
	bobChat := telegramtest.Private(bob)
	b.fake.SendText(bobChat, bob, "/refund stxNOPE")
	b.reply(t, bobChat.ID, `No payment has the charge id "stxNOPE"`)
	if b.fake.Refunded(charge) {
		t.Fatal("refunded by a refused command")
	}

	b.fake.SendText(bobChat, bob, "/refund "+charge)
	done := b.reply(t, bobChat.ID, "Done.")
	if !b.fake.Refunded(charge) || !strings.Contains(done.Visible, "$5.00 taken back") || !strings.Contains(done.Visible, "the account owes $3.00") {
		t.Fatalf("refund reply = %q, refunded at Telegram: %v", done.Visible, b.fake.Refunded(charge))
	}
	// The payer hears of it in the chat the invoice came from.
	if m := b.reply(t, chat.ID, "was refunded"); !strings.Contains(m.Visible, "you owe $3.00") {
		t.Fatalf("payer's refund notice = %q", m.Visible)
	}
	bal, _ := b.bed.Store.Balances(t.Context(), acc)
	if c := bal[billing.BucketCredit]; c.Posted != 0 || c.Debt != 3*billing.Micro {
		t.Fatalf("after the refund: %+v, want $0.00 posted and $3.00 owed", c)
	}
	// The debt is shown and runs are refused.
	b.fake.SendText(chat, alice, "/balance")
	if m := b.reply(t, chat.ID, "Owed after a refund"); !strings.Contains(m.Visible, "$3.00") {
		t.Fatalf("/balance = %q", m.Visible)
	}
	b.fake.SendText(chat, alice, "/research AAPL")
	q := b.reply(t, chat.ID, "You owe $3.00 after a refund")
	for _, btn := range q.Buttons() {
		if strings.HasPrefix(btn.Text, "Confirm") {
			t.Fatalf("a quote in debt offers %q", btn.Text)
		}
	}
	// The quote from before cannot be confirmed now: nothing is held.
	press := b.fake.Press(chat, alice, before.ID, button(t, before, "Confirm"))
	if ans := b.fake.WaitAnswer(t, press); !strings.HasPrefix(ans.Fields["text"], "You owe money after a refund") {
		t.Fatalf("confirm in debt answered %v", ans.Fields)
	}
	if bal, _ := b.bed.Store.Balances(t.Context(), acc); bal[billing.BucketCredit].Held != 0 {
		t.Fatalf("a hold was placed in debt: %+v", bal[billing.BucketCredit])
	}
	// A second refund of the same charge is refused and changes nothing.
	b.fake.SendText(bobChat, bob, "/refund "+charge)
	b.reply(t, bobChat.ID, "was refunded already")
	b.bed.CheckLedger()
}

func TestAdminGrantAndLimits(t *testing.T) {
	t.Parallel()
	b := starsBundle(t)
	chat := telegramtest.Private(alice)
	bobChat := telegramtest.Private(bob)
	b.fake.SendText(chat, alice, "/grant telegram:1001 5.00 credit thanks")
	b.reply(t, chat.ID, "Only an admin can grant money")
	b.fake.SendText(bobChat, bob, "/grant telegram:1001 5.00 credit beta tester")
	g := b.reply(t, bobChat.ID, "Granted $5.00 of Credit to telegram:1001")
	if !strings.Contains(g.Visible, "by telegram:1002: beta tester") {
		t.Fatalf("grant reply = %q", g.Visible)
	}
	acc, _ := b.bed.Store.AccountOf(t.Context(), who(alice))
	entries, _ := b.bed.Store.Entries(t.Context(), acc, 5)
	if len(entries) != 1 || entries[0].Kind != billing.KindGrant || entries[0].Actor != "telegram:1002" || entries[0].Reference != "admin grant: beta tester" {
		t.Fatalf("entries = %+v: want one grant audited with the admin", entries)
	}
	for _, bad := range []string{"/limit daily -1", "/limit daily 1e9", "/limit daily abc", "/limit weekly 2.00", "/limit daily 0"} {
		b.fake.SendText(chat, alice, bad)
		b.reply(t, chat.ID, "Usage: /limit daily 2.00")
	}
	if sp, _ := b.bed.Store.Spending(t.Context(), acc, billing.Limits{}); sp.Own {
		t.Fatalf("bad limits were stored: %+v", sp)
	}
	b.fake.SendText(chat, alice, "/limit daily 2.00")
	if m := b.reply(t, chat.ID, "Spend limits set"); !strings.Contains(m.Visible, "today: $0.00 of $2.00") {
		t.Fatalf("/limit = %q", m.Visible)
	}
	b.fake.SendText(chat, alice, "/research AAPL")
	q := b.reply(t, chat.ID, "Spend limits")
	if !strings.Contains(q.Visible, "today: $0.00 of $2.00") {
		t.Fatalf("quote = %q: want today's spend against the limit", q.Visible)
	}
	b.fake.SendText(chat, alice, "/limit off")
	if m := b.reply(t, chat.ID, "today: $0.00 (no limit)"); m.Visible == "" {
		t.Fatal("limit off not shown")
	}
	b.bed.CheckLedger()
}

// flakyPayments fails the first n credits, as a database that is briefly away.
type flakyPayments struct {
	bots.PayStore
	mu   sync.Mutex
	fail int
}

func (f *flakyPayments) CreditPayment(ctx context.Context, req billing.PaymentRequest) (billing.Payment, billing.Entry, error) {
	f.mu.Lock()
	if f.fail > 0 {
		f.fail--
		f.mu.Unlock()
		return billing.Payment{}, billing.Entry{}, errors.New("connection refused")
	}
	f.mu.Unlock()
	return f.PayStore.CreditPayment(ctx, req)
}

// TestStarsPaymentRetried: Telegram sends a successful_payment once, so a
// credit that fails is retried until it lands, once.
func TestStarsPaymentRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}, config: func(c *telegram.Config) { c.PaymentRetry = 10 * time.Millisecond }})
	flaky := &flakyPayments{PayStore: b.bed.Store, fail: 2}
	b.conv.Pay = &bots.Pay{Store: flaky, Amounts: []billing.Money{5 * billing.Micro}, StarsPerUSD: 50}
	if err := b.ad.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	chat := telegramtest.Private(alice)
	b.fake.SendText(chat, alice, "/topup credit 5")
	var inv telegramtest.Invoice
	b.fake.Wait(t, b.wait, "an invoice", func() bool {
		calls := b.fake.Calls("sendInvoice")
		if len(calls) == 0 {
			return false
		}
		m, ok := b.fake.Message(chat.ID, calls[0].MessageID)
		if ok {
			inv = *m.Invoice
		}
		return ok
	})
	b.fake.Pay(chat, alice, inv.Payload, "XTR", inv.Total)
	b.reply(t, chat.ID, "Payment received: $5.00 added")
	b.logs.WaitFor(t, "payment not credited yet, retrying", 2)
	acc, _ := b.bed.Store.AccountOf(t.Context(), who(alice))
	bal, _ := b.bed.Store.Balances(t.Context(), acc)
	if bal[billing.BucketCredit].Posted != 5*billing.Micro {
		t.Fatalf("credit = %s, want $5.00 once", bal[billing.BucketCredit].Posted)
	}
	b.bed.CheckLedger()
}

// TestTelegramFiatPurchase: with a payment provider's token, /topup in
// Telegram sends a USD invoice through it (the same flow as Stars: checked
// at pre-checkout, credited once by its charge id); an admin's /refund
// reverses it and names the provider's charge to refund there.
func TestTelegramFiatPurchase(t *testing.T) {
	t.Parallel()
	const providerToken = "284685063:TEST:ProviderTokenNeverLogged"
	b := setup(t, options{bed: testbed.Options{NoWorkers: true, Admins: []billing.Identity{who(bob)}},
		config: func(c *telegram.Config) { c.PaymentProviderToken = providerToken }})
	b.conv.Pay = &bots.Pay{Store: b.bed.Store, Amounts: []billing.Money{billing.Micro, 5 * billing.Micro}, StarsPerUSD: 50, TelegramFiat: true,
		Refunders: map[string]bots.Refunder{billing.ProviderStars: b.ad}}
	if err := b.ad.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	chat := telegramtest.Private(alice)
	b.fake.SendText(chat, alice, "/topup credit")
	menu := b.reply(t, chat.ID, "in US dollars")
	b.fake.Press(chat, alice, menu.ID, button(t, menu, "$5 Credit"))
	var inv telegramtest.Invoice
	b.fake.Wait(t, b.wait, "an invoice", func() bool {
		calls := b.fake.Calls("sendInvoice")
		if len(calls) == 0 || !calls[len(calls)-1].OK() {
			return false
		}
		m, ok := b.fake.Message(chat.ID, calls[len(calls)-1].MessageID)
		if ok {
			inv = *m.Invoice
		}
		return ok
	})
	if inv.Currency != "USD" || inv.Total != 500 || inv.ProviderToken != providerToken {
		t.Fatalf("invoice = %+v: want 500 USD cents through the provider", inv)
	}
	if a := b.fake.WaitCheckout(t, b.fake.PreCheckout(alice, inv.Payload, "USD", 499)); a.OK {
		t.Fatal("an altered total passed pre-checkout")
	}
	if a := b.fake.WaitCheckout(t, b.fake.PreCheckout(alice, inv.Payload, "XTR", 250)); a.OK {
		t.Fatal("a USD invoice paid in Stars passed pre-checkout")
	}
	if a := b.fake.WaitCheckout(t, b.fake.PreCheckout(alice, inv.Payload, "USD", 500)); !a.OK {
		t.Fatalf("pre-checkout of the real invoice = %+v", a)
	}
	charge := b.fake.Pay(chat, alice, inv.Payload, "USD", 500)
	got := b.reply(t, chat.ID, "Payment received")
	if !strings.Contains(got.Visible, "$5.00 added to your Credit") || !strings.Contains(got.Visible, "telegram:"+charge) {
		t.Fatalf("payment reply = %q", got.Visible)
	}
	b.fake.Repay(chat, alice, inv.Payload, "USD", 500, charge)
	b.logs.WaitFor(t, "payment replayed", 1)
	acc, _ := b.bed.Store.AccountOf(t.Context(), who(alice))
	if bal, _ := b.bed.Store.Balances(t.Context(), acc); bal[billing.BucketCredit].Posted != 5*billing.Micro {
		t.Fatalf("credit = %s, want $5.00 once", bal[billing.BucketCredit].Posted)
	}
	bobChat := telegramtest.Private(bob)
	b.fake.SendText(bobChat, bob, "/refund "+charge)
	done := b.reply(t, bobChat.ID, "Done.")
	if !strings.Contains(done.Visible, "$5.00 taken back") || !strings.Contains(done.Visible, telegramtest.ProviderCharge(charge)) {
		t.Fatalf("refund reply = %q: want the reversal and the provider's charge to refund", done.Visible)
	}
	if bal, _ := b.bed.Store.Balances(t.Context(), acc); bal[billing.BucketCredit].Posted != 0 {
		t.Fatalf("credit after the refund = %s", bal[billing.BucketCredit].Posted)
	}
	b.fake.SendText(bobChat, bob, "/refund "+charge)
	b.reply(t, bobChat.ID, "was refunded already")
	if strings.Contains(b.logs.String(), providerToken) {
		t.Fatal("the provider token reached the log")
	}
	b.bed.CheckLedger()
}
