package stripe_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/stripe"
	"github.com/tokensforge/forgebot/bots/stripe/stripetest"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
)

const (
	secretKey     = stripetest.SecretKey
	webhookSecret = stripetest.WebhookSecret
)

var (
	alice = billing.Identity{Platform: "discord", ExternalID: "456"}
	admin = billing.Identity{Platform: "discord", ExternalID: "1"}
)

// sign makes a Stripe-Signature header the way Stripe does (stripetest.Sign).
func sign(body []byte, at time.Time, secret string) string { return stripetest.Sign(body, at, secret) }

// recorder is the chat where the payer is told.
type recorder struct {
	mu    sync.Mutex
	texts []string
	got   chan string
}

func (r *recorder) Send(_ context.Context, d research.Destination, v bots.View) (string, error) {
	r.mu.Lock()
	r.texts = append(r.texts, v.Text)
	r.mu.Unlock()
	r.got <- d.ChatID + ": " + v.Text
	return "msg", nil
}

func (r *recorder) Edit(context.Context, research.Destination, bots.View) error { return nil }

type bundle struct {
	bed     *testbed.Bed
	conv    *bots.Conversation
	stripe  *stripetest.Server
	hook    *httptest.Server
	chat    *recorder
	account billing.AccountID
}

func setup(t *testing.T, pg bool) *bundle {
	b := &bundle{bed: testbed.New(t, testbed.Options{Postgres: pg, NoWorkers: true, Admins: []billing.Identity{admin}}), stripe: stripetest.New(t), chat: &recorder{got: make(chan string, 16)}}
	ob := bots.NewOutbox(nil)
	ob.Register("discord", b.chat, bots.Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go ob.Run(ctx)
	b.conv = &bots.Conversation{Engine: b.bed.Engine, Ledger: b.bed.Store, Runs: b.bed.Store, Outbox: ob}
	co, err := stripe.New(stripe.Config{SecretKey: secretKey, WebhookSecret: webhookSecret, APIURL: b.stripe.URL,
		SuccessURL: "https://forgebot.test/paid", CancelURL: "https://forgebot.test/cancelled"}, b.conv)
	if err != nil {
		t.Fatal(err)
	}
	b.conv.Pay = &bots.Pay{Store: b.bed.Store, Amounts: []billing.Money{billing.Micro, 5 * billing.Micro}, Checkout: co,
		Refunders: map[string]bots.Refunder{billing.ProviderStripe: co}}
	mux := http.NewServeMux()
	co.Mount(mux)
	b.hook = httptest.NewServer(mux)
	t.Cleanup(b.hook.Close)
	return b
}

// topup asks for a $5.00 Credit top-up on Discord and returns the link and the session's metadata.
func (b *bundle) topup(t *testing.T) (string, url.Values) {
	t.Helper()
	rs := b.conv.Handle(t.Context(), bots.Incoming{Identity: alice, Chat: bots.Chat{Platform: "discord", ID: "chan-1"}, Text: "/topup credit 5.00"})
	if len(rs) != 1 || len(rs[0].View.Buttons) != 1 || !rs[0].View.Private {
		t.Fatalf("/topup = %+v: want one private view with a link", rs)
	}
	link := rs[0].View.Buttons[0][0].URL
	sessions := b.stripe.Sessions()
	form := sessions[len(sessions)-1].Form
	var err error
	b.account, err = b.bed.Store.AccountOf(t.Context(), alice)
	if err != nil {
		t.Fatal(err)
	}
	return link, form
}

func (b *bundle) post(t *testing.T, body []byte, sig string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.hook.URL+stripe.WebhookPath, bytes.NewReader(body))
	req.Header.Set("Stripe-Signature", sig)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func event(id, typ string, object map[string]any) []byte {
	raw, _ := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "api_version": "2025-07-30.basil",
		"created": time.Now().Unix(), "data": map[string]any{"object": object}})
	return raw
}

func session(id string, meta url.Values, status string, cents int64) map[string]any {
	return map[string]any{"id": id, "object": "checkout.session", "payment_status": status, "amount_total": cents, "currency": "usd",
		"payment_intent": "pi_" + id, "client_reference_id": meta.Get("client_reference_id"),
		"metadata": map[string]string{"account": meta.Get("metadata[account]"), "bucket": meta.Get("metadata[bucket]"),
			"amount_micros": meta.Get("metadata[amount_micros]"), "nonce": meta.Get("metadata[nonce]")}}
}

func (b *bundle) credit(t *testing.T) billing.Balance {
	t.Helper()
	bal, err := b.bed.Store.Balances(t.Context(), b.account)
	if err != nil {
		t.Fatal(err)
	}
	return bal[billing.BucketCredit]
}

func both(t *testing.T, fn func(t *testing.T, pg bool)) {
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); fn(t, false) })
	t.Run("postgres", func(t *testing.T) { t.Parallel(); fn(t, true) })
}

func TestCheckoutPaidOnce(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := setup(t, pg)
		link, form := b.topup(t)
		if !strings.HasPrefix(link, "https://checkout.stripe.test/c/pay/cs_test_") {
			t.Fatalf("link = %q", link)
		}
		if form.Get("mode") != "payment" || form.Get("line_items[0][price_data][unit_amount]") != "500" ||
			form.Get("line_items[0][price_data][currency]") != "usd" || form.Get("client_reference_id") != fmt.Sprint(b.account) ||
			form.Get("metadata[bucket]") != "credit" || form.Get("metadata[amount_micros]") != "5000000" || len(form.Get("metadata[nonce]")) < 22 ||
			!strings.HasPrefix(b.stripe.Sessions()[0].Key, "forgebot-offer-") {
			t.Fatalf("checkout session request = %v, idempotency key %q", form, b.stripe.Sessions()[0].Key)
		}
		sid := strings.TrimPrefix(link, "https://checkout.stripe.test/c/pay/")

		// A bad signature, an old timestamp and a wrong secret are refused: nothing credited.
		body := event("evt_1", "checkout.session.completed", session(sid, form, "paid", 500))
		for name, sig := range map[string]string{
			"bad signature": "t=" + fmt.Sprint(time.Now().Unix()) + ",v1=" + strings.Repeat("ab", 32),
			"old timestamp": sign(body, time.Now().Add(-10*time.Minute), webhookSecret),
			"other secret":  sign(body, time.Now(), "whsec_other"),
			"no signature":  "",
		} {
			if code := b.post(t, body, sig); code != http.StatusBadRequest {
				t.Errorf("%s: webhook answered %d, want 400", name, code)
			}
		}
		if c := b.credit(t); c.Posted != 0 {
			t.Fatalf("credited %s by refused webhooks", c.Posted)
		}
		// An unpaid completion (an async method) credits nothing yet.
		unpaid := event("evt_0", "checkout.session.completed", session(sid, form, "unpaid", 500))
		if code := b.post(t, unpaid, sign(unpaid, time.Now(), webhookSecret)); code != http.StatusOK || b.credit(t).Posted != 0 {
			t.Fatalf("unpaid session: %d, credit %s", code, b.credit(t).Posted)
		}
		// The paid session is credited once, however often the event (or
		// the async success after it) arrives.
		if code := b.post(t, body, sign(body, time.Now(), webhookSecret)); code != http.StatusOK {
			t.Fatalf("paid session answered %d", code)
		}
		select {
		case msg := <-b.chat.got:
			if !strings.HasPrefix(msg, "chan-1: ") || !strings.Contains(msg, "$5.00 added to your Credit") || !strings.Contains(msg, "stripe:"+sid) {
				t.Fatalf("chat notice = %q", msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the payer was not told in chat")
		}
		async := event("evt_2", "checkout.session.async_payment_succeeded", session(sid, form, "paid", 500))
		for _, again := range [][]byte{body, async, body} {
			if code := b.post(t, again, sign(again, time.Now(), webhookSecret)); code != http.StatusOK {
				t.Fatalf("replay answered %d", code)
			}
		}
		if c := b.credit(t); c.Posted != 5*billing.Micro {
			t.Fatalf("credit after replays = %s, want $5.00 once", c.Posted)
		}
		// Edited metadata (another amount) matches no offer: 400, nothing credited.
		forged := form
		forged.Set("metadata[amount_micros]", "20000000")
		fb := event("evt_3", "checkout.session.completed", session("cs_test_forged", forged, "paid", 2000))
		if code := b.post(t, fb, sign(fb, time.Now(), webhookSecret)); code != http.StatusBadRequest {
			t.Fatalf("forged metadata answered %d, want 400", code)
		}
		if c := b.credit(t); c.Posted != 5*billing.Micro {
			t.Fatalf("credit after a forged event = %s", c.Posted)
		}
		b.bed.CheckLedger()
	})
}

func TestCheckoutRefund(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := setup(t, pg)
		link, form := b.topup(t)
		sid := strings.TrimPrefix(link, "https://checkout.stripe.test/c/pay/")
		charge := func(id string, refunded int64) []byte {
			return event(id, "charge.refunded", map[string]any{"id": "ch_1", "object": "charge", "amount": 500, "amount_refunded": refunded,
				"currency": "usd", "refunded": refunded == 500, "payment_intent": "pi_" + sid})
		}
		// A refund that arrives before its payment is retried later (5xx), changing nothing.
		early := charge("evt_r0", 200)
		if code := b.post(t, early, sign(early, time.Now(), webhookSecret)); code != http.StatusInternalServerError {
			t.Fatalf("refund before payment answered %d, want 500 (retry)", code)
		}
		paid := event("evt_1", "checkout.session.completed", session(sid, form, "paid", 500))
		if code := b.post(t, paid, sign(paid, time.Now(), webhookSecret)); code != http.StatusOK {
			t.Fatalf("paid answered %d", code)
		}
		<-b.chat.got
		// Spend $4.00 of it, then $2.00 is refunded, then the rest: the last
		// $1.00 still there is taken back and $2.00 is owed.
		h, err := b.bed.Store.PlaceHold(t.Context(), billing.HoldRequest{AccountID: b.account, Bucket: billing.BucketCredit, Amount: 4 * billing.Micro,
			TTL: time.Hour, Key: "spend", Reference: "run:x"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.bed.Store.CaptureHold(t.Context(), billing.CaptureRequest{HoldID: h.ID, Amount: 4 * billing.Micro, Key: "spend-c"}); err != nil {
			t.Fatal(err)
		}
		for _, step := range []struct {
			body         []byte
			posted, debt billing.Money
		}{
			{charge("evt_r1", 200), 0, billing.Micro},
			{charge("evt_r1", 200), 0, billing.Micro},     // the same event again
			{charge("evt_r2", 500), 0, 4 * billing.Micro}, // the rest
			{charge("evt_r1", 200), 0, 4 * billing.Micro}, // an old event, late
		} {
			if code := b.post(t, step.body, sign(step.body, time.Now(), webhookSecret)); code != http.StatusOK {
				t.Fatalf("refund event answered %d", code)
			}
			if c := b.credit(t); c.Posted != step.posted || c.Debt != step.debt {
				t.Fatalf("after a refund event: %+v, want posted %s and debt %s", c, step.posted, step.debt)
			}
		}
		select {
		case msg := <-b.chat.got:
			if !strings.Contains(msg, "was refunded") || !strings.Contains(msg, "you owe") {
				t.Fatalf("refund notice = %q", msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the payer was not told of the refund")
		}
		b.bed.CheckLedger()
	})
}

// TestCheckoutAdminRefund: an admin's /refund of a Stripe payment refunds it
// at Stripe (once, keyed) and reverses the credit, the spent part as debt;
// Stripe's charge.refunded that follows changes nothing; a second /refund,
// an unknown charge and a non-admin are refused and change nothing.
func TestCheckoutAdminRefund(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := setup(t, pg)
		_, form := b.topup(t)
		s := b.stripe.Sessions()[0]
		if s.Form.Encode() != form.Encode() {
			t.Fatal("the session is not the top-up's")
		}
		if code := stripetest.Deliver(t, b.hook.URL+stripe.WebhookPath, webhookSecret, s.Completed("evt_1", "paid")); code != http.StatusOK {
			t.Fatalf("paid answered %d", code)
		}
		<-b.chat.got
		h, err := b.bed.Store.PlaceHold(t.Context(), billing.HoldRequest{AccountID: b.account, Bucket: billing.BucketCredit, Amount: 4 * billing.Micro,
			TTL: time.Hour, Key: "spend", Reference: "run:x"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.bed.Store.CaptureHold(t.Context(), billing.CaptureRequest{HoldID: h.ID, Amount: 4 * billing.Micro, Key: "spend-c"}); err != nil {
			t.Fatal(err)
		}
		say := func(who billing.Identity, text string) string {
			rs := b.conv.Handle(t.Context(), bots.Incoming{Identity: who, Chat: bots.Chat{Platform: "discord", ID: "dm"}, Text: text, MessageID: text + who.String()})
			if len(rs) != 1 {
				t.Fatalf("%s: %d replies", text, len(rs))
			}
			return rs[0].View.Text
		}
		for _, tc := range []struct {
			who        billing.Identity
			text, want string
		}{
			{alice, "/refund " + s.ID, "Only an admin"},
			{admin, "/refund cs_test_unknown", "No payment has the charge id"},
		} {
			if got := say(tc.who, tc.text); !strings.Contains(got, tc.want) {
				t.Errorf("%s by %s: %q, want %q", tc.text, tc.who, got, tc.want)
			}
		}
		if n := len(b.stripe.Refunds()); n != 0 {
			t.Fatalf("%d refunds made by refused commands", n)
		}
		got := say(admin, "/refund "+s.ID)
		if !strings.HasPrefix(got, "Done.") || !strings.Contains(got, "owes $4.00") {
			t.Fatalf("/refund = %q: want it done, with the $4.00 owed", got)
		}
		rf := b.stripe.Refunds()
		if len(rf) != 1 || rf[0].PaymentIntent != s.PaymentIntent() || rf[0].Amount != 500 || !strings.HasPrefix(rf[0].Key, "forgebot-refund-") {
			t.Fatalf("refunds at Stripe = %+v: want one of 500 cents of %s, keyed", rf, s.PaymentIntent())
		}
		if c := b.credit(t); c.Posted != 0 || c.Debt != 4*billing.Micro {
			t.Fatalf("after /refund: %+v, want posted 0 and $4.00 owed", c)
		}
		select {
		case msg := <-b.chat.got:
			if !strings.Contains(msg, "was refunded") || !strings.Contains(msg, "you owe $4.00") {
				t.Fatalf("payer's refund notice = %q", msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the payer was not told of the refund")
		}
		// Stripe reports the refund it made: nothing changes.
		if code := stripetest.Deliver(t, b.hook.URL+stripe.WebhookPath, webhookSecret, s.ChargeRefunded("evt_r", 500)); code != http.StatusOK {
			t.Fatalf("charge.refunded answered %d", code)
		}
		if got := say(admin, "/refund "+s.ID); !strings.Contains(got, "refunded already") {
			t.Fatalf("second /refund = %q", got)
		}
		if c := b.credit(t); c.Posted != 0 || c.Debt != 4*billing.Micro || len(b.stripe.Refunds()) != 1 {
			t.Fatalf("after the webhook and a second /refund: %+v, %d refunds", c, len(b.stripe.Refunds()))
		}
		b.bed.CheckLedger()
	})
}
