package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// testContinueRunExtends: an agent run's Continue places its additional
// hold in the same transaction as the run's answer and requeue, keyed; a
// bucket that cannot cover it changes nothing; a run that is not paused is
// refused; the settle captures from the hold first, then the extension,
// with one receipt for the bucket and its steps.
func testContinueRunExtends(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "cli:extend", billing.BucketCredit, 10_000)
	q := research.Quote{ID: "q-extend", AccountID: acc, Status: research.QuoteOpen, CreatedAt: b.clock.Now(), ExpiresAt: b.clock.Now().Add(time.Hour)}
	if err := b.store.SaveQuote(b.ctx, q); err != nil {
		t.Fatal(err)
	}
	run := research.Run{ID: "r-extend", QuoteID: q.ID, AccountID: acc, Bucket: billing.BucketCredit,
		Price: billing.Price{InputPerM: billing.Micro, OutputPerM: billing.Micro}, Outputs: map[int]string{},
		Agent: &research.AgentState{Question: "q", Plan: research.DefaultAgentPlan}}
	run, err := b.store.ConfirmQuote(b.ctx, q.ID, run, []billing.HoldRequest{{AccountID: acc, Bucket: billing.BucketCredit,
		Amount: 4000, TTL: time.Hour, Key: "run:r-extend:hold", Reference: "run:r-extend", Actor: "test"}}, time.Minute)
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	extend := func(amount billing.Money, n string) (research.Run, error) {
		return b.store.ContinueRun(b.ctx, run.ID, "cli:extend", "continue", &billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit,
			Amount: amount, TTL: time.Hour, Key: "run:r-extend:extend:" + n, Reference: "run:r-extend:extension", Actor: "cli:extend"},
			time.Minute, time.Hour, func(r *research.Run) error { r.Agent.WrapUp = "answered " + n; return nil })
	}
	if _, err := extend(1000, "0"); !errors.Is(err, research.ErrWrongState) {
		t.Fatalf("extending a queued run = %v, want ErrWrongState", err)
	}
	pause := func() {
		t.Helper()
		if _, err := b.store.UpdateRun(b.ctx, run.ID, "test", "ask", func(r *research.Run) error { r.State = research.Paused; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	pause()
	if _, err := extend(7000, "1"); !errors.Is(err, billing.ErrInsufficientFunds) {
		t.Fatalf("an extension past the balance = %v", err)
	}
	if r, _ := b.store.Run(b.ctx, run.ID); r.State != research.Paused || len(r.Extensions) != 0 || r.Agent.WrapUp != "" {
		t.Fatalf("a refused extension changed the run: %+v", r)
	}
	if bal := b.balance(t, acc, billing.BucketCredit); bal.Held != 4000 {
		t.Fatalf("held %s after a refused extension", bal.Held)
	}
	r, err := extend(3000, "1")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != research.Queued || len(r.Extensions) != 1 || r.Extensions[0].Amount != 3000 || r.Cap() != 7000 || r.Agent.WrapUp != "answered 1" {
		t.Fatalf("extended run = %+v", r)
	}
	if bal := b.balance(t, acc, billing.BucketCredit); bal.Held != 7000 || bal.Available != 3000 {
		t.Fatalf("balance after the extension = %+v", bal)
	}
	entries, err := b.store.Entries(b.ctx, acc, 10)
	if err != nil || entries[0].Kind != billing.KindHold || entries[0].HoldID != r.Extensions[0].HoldID || entries[0].Amount != -3000 {
		t.Fatalf("newest entry = %+v, %v", entries[0], err)
	}
	b.mustCheck(t)
	// The same key again (a press replayed) is the same hold, not a second.
	pause()
	if r, err = extend(3000, "1"); err != nil || len(r.Extensions) != 1 {
		t.Fatalf("replayed extension: %+v, %v", r.Extensions, err)
	}
	steps := []billing.ReceiptStep{{Step: 1, Kind: "model", Label: "answer", TokensIn: 10, TokensOut: 5, Cost: 15, Took: time.Second}}
	settled, err := b.store.SettleRun(b.ctx, run.ID, "test", "done", func(*research.Run) (billing.Money, billing.Money) { return 5500, 0 }, func(r *research.Run, rc *billing.Receipt) error {
		r.State, rc.Steps = research.Succeeded, steps
		return nil
	})
	if err != nil || settled.Captured != 5500 {
		t.Fatalf("settle: captured %s, %v", settled.Captured, err)
	}
	main, _ := b.store.Hold(b.ctx, r.HoldID)
	ext, _ := b.store.Hold(b.ctx, r.Extensions[0].HoldID)
	if main.Captured != 4000 || ext.Captured != 1500 || ext.Status != billing.HoldCaptured {
		t.Fatalf("captured %s of the hold and %s (%s) of the extension", main.Captured, ext.Captured, ext.Status)
	}
	rc, err := b.store.Receipt(b.ctx, settled.ReceiptID)
	if err != nil || rc.Held != 7000 || rc.Captured != 5500 || rc.Released != 1500 || len(rc.Steps) != 1 || rc.Steps[0] != steps[0] {
		t.Fatalf("receipt = %+v, %v", rc, err)
	}
	if bal := b.balance(t, acc, billing.BucketCredit); bal.Held != 0 || bal.Posted != 10_000-5500 {
		t.Fatalf("balance after settling = %+v", bal)
	}
	b.mustCheck(t)
}
