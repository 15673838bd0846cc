package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeStripeWebhook: with STRIPE_* set, `forgebot serve` mounts the
// webhook (a bad signature is 400 and changes nothing) and the return pages;
// bad payment settings stop it with a clear line.
func TestServeStripeWebhook(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "forgebot.db")
	cli{t, db}.ok("migrate")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{"DATABASE_URL": db, "FORGE_HTTP_ADDR": addr, "FORGE_MARKET": "demo",
		"STRIPE_SECRET_KEY": "sk_test_serve", "STRIPE_WEBHOOK_SECRET": "whsec_serve", "STRIPE_API_URL": "http://127.0.0.1:9",
		"FORGE_WELCOME_GRANT": "routed:0.10", "FORGE_LIMIT_DAILY": "2.00", "FORGE_LIMIT_DAILY_MAX": "10.00"}
	logs := newScreen()
	sig := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"serve", "--grace", "1s"}, func(k string) string { return env[k] },
			stdio{in: strings.NewReader(""), out: logs, err: logs, interrupts: sig})
	}()
	logs.WaitFor(t, "stripe checkout", 1)
	logs.WaitFor(t, "serving", 1)
	res, err := http.Post("http://"+addr+"/stripe/webhook", "application/json", strings.NewReader(`{"id":"evt_1","type":"checkout.session.completed"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("unsigned webhook answered %d, want 400", res.StatusCode)
	}
	res, err = http.Get("http://" + addr + "/stripe/done")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("return page answered %d", res.StatusCode)
	}
	sig <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not drain")
	}
	if strings.Contains(logs.String(), "whsec_serve") || strings.Contains(logs.String(), "sk_test_serve") {
		t.Fatal("a Stripe key reached the log")
	}

	for name, bad := range map[string]map[string]string{
		"amounts":       {"FORGE_TOPUP_AMOUNTS": "1,abc"},
		"welcome":       {"FORGE_WELCOME_GRANT": "gold:1"},
		"stripe half":   {"STRIPE_SECRET_KEY": "sk_test_x"},
		"limit above":   {"FORGE_LIMIT_DAILY": "20", "FORGE_LIMIT_DAILY_MAX": "10"},
		"stars":         {"FORGE_STARS_PER_USD": "-3"},
		"stripe secret": {"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "nope"},
	} {
		bad["DATABASE_URL"], bad["FORGE_HTTP_ADDR"] = db, "127.0.0.1:0"
		errs := newScreen()
		code := run(t.Context(), []string{"serve"}, func(k string) string { return bad[k] }, stdio{in: strings.NewReader(""), out: errs, err: errs})
		if code != 2 || strings.Count(strings.TrimSpace(errs.String()), "\n") > 0 {
			t.Errorf("%s: serve exited %d with %q, want 2 and one line", name, code, errs.String())
		}
	}
}
