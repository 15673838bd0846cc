package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// testEndedRunIsFrozen: once a run settled, UpdateRun refuses to change it
// (usage, outputs, state) with ErrWrongState, without calling fn, and a
// second settle is refused too; the ledger stays as the settle left it.
func testEndedRunIsFrozen(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "cli:frozen", billing.BucketCredit, billing.Micro)
	q := research.Quote{ID: "q-frozen", AccountID: acc, Status: research.QuoteOpen, CreatedAt: b.clock.Now(), ExpiresAt: b.clock.Now().Add(time.Hour)}
	if err := b.store.SaveQuote(b.ctx, q); err != nil {
		t.Fatal(err)
	}
	run := research.Run{ID: "r-frozen", QuoteID: q.ID, AccountID: acc, Bucket: billing.BucketCredit,
		Price: billing.Price{InputPerM: billing.Micro, OutputPerM: billing.Micro}, Outputs: map[int]string{}}
	run, err := b.store.ConfirmQuote(b.ctx, q.ID, run, []billing.HoldRequest{{AccountID: acc, Bucket: billing.BucketCredit,
		Amount: 5000, TTL: time.Hour, Key: "run:r-frozen:hold", Reference: "run:r-frozen", Actor: "test"}}, time.Minute)
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if _, err := b.store.UpdateRun(b.ctx, run.ID, "test", "usage", func(r *research.Run) error {
		r.TokensIn, r.TokensOut = 1000, 1000
		return nil
	}); err != nil {
		t.Fatalf("update a live run: %v", err)
	}
	settled, err := b.store.SettleRun(b.ctx, run.ID, "test", "done", charge(2000, 0), func(r *research.Run, rc *billing.Receipt) error {
		r.State = research.Cancelled
		return nil
	})
	if err != nil || settled.Captured != 2000 {
		t.Fatalf("settle: %+v, %v", settled, err)
	}
	called := false
	_, err = b.store.UpdateRun(b.ctx, run.ID, "test", "late usage", func(r *research.Run) error {
		called = true
		r.TokensOut, r.State = 3e18, research.Running
		return nil
	})
	if !errors.Is(err, research.ErrWrongState) || called {
		t.Fatalf("update of an ended run = %v (fn called: %t), want ErrWrongState", err, called)
	}
	if _, err := b.store.SettleRun(b.ctx, run.ID, "test", "again", charge(5000, 0), func(r *research.Run, rc *billing.Receipt) error {
		r.State = research.Succeeded
		return nil
	}); !errors.Is(err, research.ErrWrongState) {
		t.Fatalf("second settle = %v", err)
	}
	got, err := b.store.Run(b.ctx, run.ID)
	if err != nil || got.State != research.Cancelled || got.TokensOut != 1000 || got.Captured != 2000 {
		t.Fatalf("ended run changed: %+v, %v", got, err)
	}
	if bal := b.balance(t, acc, billing.BucketCredit); bal.Posted != billing.Micro-2000 || bal.Held != 0 {
		t.Fatalf("balance = %+v", bal)
	}
	b.mustCheck(t)
}

// charge is a SettleRun charge that captures fixed amounts.
func charge(capture, fallback billing.Money) func(*research.Run) (billing.Money, billing.Money) {
	return func(*research.Run) (billing.Money, billing.Money) { return capture, fallback }
}
