package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/bots/stripe/stripetest"
)

// TestDemoStripeTopup: with STRIPE_* set, a console user tops up in the
// demo: /topup's button answers with a Stripe Checkout link, Stripe's signed
// webhook to the demo credits it once, the terminal says the money landed,
// and /balance, /usage and the wallet ledger show it.
func TestDemoStripeTopup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "data", "forgebot.db")
	fake := stripetest.New(t)
	env := map[string]string{"DATABASE_URL": db, "STRIPE_SECRET_KEY": stripetest.SecretKey,
		"STRIPE_WEBHOOK_SECRET": stripetest.WebhookSecret, "STRIPE_API_URL": fake.URL}
	in, typist := io.Pipe()
	defer typist.Close()
	out := newScreen()
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"demo"}, func(k string) string { return env[k] },
			stdio{in: in, out: out, err: out, interrupts: make(chan os.Signal)})
	}()
	typ := func(line string) { _, _ = io.WriteString(typist, line+"\n") }

	screen := out.WaitFor(t, "/stripe/webhook", 1)
	hook := ""
	for _, f := range strings.Fields(screen) {
		if strings.HasSuffix(f, "/stripe/webhook") {
			hook = f
		}
	}
	typ("/topup")
	out.WaitFor(t, "Stripe Checkout page", 1)
	screen = out.WaitFor(t, "$5 Credit", 1)
	choice := ""
	for _, f := range strings.Split(screen, "   ") {
		if strings.Contains(f, "] $5 Credit") {
			choice = strings.Trim(strings.TrimSpace(f[:strings.Index(f, "]")]), "[")
		}
	}
	typ(choice)
	s := fake.WaitSession(t, 1, 30*time.Second)
	out.WaitFor(t, "Pay $5.00: https://checkout.stripe.test/c/pay/"+s.ID, 1)
	if s.Meta()["bucket"] != "credit" || s.Meta()["amount_micros"] != "5000000" || s.Cents() != 500 {
		t.Fatalf("checkout session %+v", s)
	}

	// A forged signature changes nothing; the paid session, delivered twice, is credited once.
	paid := s.Completed("evt_1", "paid")
	if code := stripetest.Deliver(t, hook, "whsec_not_the_endpoints", paid); code != http.StatusBadRequest {
		t.Fatalf("badly signed webhook answered %d, want 400", code)
	}
	for range 2 {
		if code := stripetest.Deliver(t, hook, stripetest.WebhookSecret, paid); code != http.StatusOK {
			t.Fatalf("paid webhook answered %d", code)
		}
	}
	out.WaitFor(t, "Payment received: $5.00 added to your Credit", 1)
	typ("/balance")
	out.WaitFor(t, "$10.00 available", 1)
	typ("/usage")
	out.WaitFor(t, "stripe:"+s.ID, 2) // the notice, then /usage's top-up line
	typ("quit")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("demo exited %d:\n%s", code, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not exit")
	}
	if n := strings.Count(out.String(), "Payment received"); n != 1 {
		t.Fatalf("told %d times of one payment:\n%s", n, out.String())
	}
	log, _ := os.ReadFile(filepath.Join(dir, "data", "demo.log"))
	for _, secret := range []string{stripetest.SecretKey, stripetest.WebhookSecret} {
		if strings.Contains(out.String()+string(log), secret) {
			t.Fatal("a Stripe key reached the terminal or the log")
		}
	}
	c := cli{t, db}
	if r := c.run("ledger", "check"); r.code != 0 {
		t.Fatalf("ledger check: %+v", r)
	}
	if l := c.ok("wallet", "ledger", "--user", "console:you"); !strings.Contains(l, "topup") || !strings.Contains(l, "stripe:"+s.ID) {
		t.Fatalf("wallet ledger lacks the top-up:\n%s", l)
	}
}
