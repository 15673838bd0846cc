package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

func testReceipts(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "telegram:42", billing.BucketRouted, billing.Micro)
	started := b.clock.Now()
	r, err := b.store.SaveReceipt(b.ctx, billing.Receipt{
		RunID: "run-1", AccountID: acc, Model: "gpt-4o-mini", Route: "routed-a", RouteKind: billing.RouteRouted,
		Bucket: billing.BucketRouted, TokensIn: 1200, TokensOut: 350, TokensInSource: billing.UsageProvider,
		TokensOutSource: billing.UsageLocal, Held: 50_000, Status: "running", Attempts: 1, StartedAt: started,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.PublicID) < 22 || strings.ContainsAny(r.PublicID, "/+=") {
		t.Fatalf("public id %q: want at least 128 bits, URL-safe", r.PublicID)
	}
	if !r.StartedAt.Equal(started) || !r.FinishedAt.IsZero() || r.TokensOutSource != billing.UsageLocal {
		t.Fatalf("stored receipt = %+v", r)
	}
	r.Status, r.Captured, r.Released, r.FinishedAt, r.Attempts = "succeeded", 1_234, 48_766, started.Add(42*time.Second), 2
	if _, err := b.store.SaveReceipt(b.ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := b.store.Receipt(b.ctx, r.PublicID)
	if err != nil || got.Status != "succeeded" || got.Captured != 1_234 || got.Released != 48_766 || got.Attempts != 2 ||
		!got.FinishedAt.Equal(started.Add(42*time.Second)) || got.RunID != "run-1" || got.Bucket != billing.BucketRouted {
		t.Fatalf("updated receipt = %+v, %v", got, err)
	}
	if _, err := b.store.Receipt(b.ctx, billing.NewPublicID()); !errors.Is(err, billing.ErrNotFound) {
		t.Fatalf("unknown receipt = %v, want ErrNotFound", err)
	}
	seen := map[string]bool{}
	for range 1000 {
		id := billing.NewPublicID()
		if seen[id] {
			t.Fatal("NewPublicID repeated itself")
		}
		seen[id] = true
	}

	for _, f := range []billing.FailedRequest{
		{RunID: "run-1", AccountID: acc, Route: "routed-a", Bucket: billing.BucketRouted, HTTPStatus: 429, ErrorClass: "rate_limited"},
		{RunID: "run-1", AccountID: acc, Route: "routed-b", Bucket: billing.BucketRouted, ErrorClass: "broken_stream", Charged: 12, Detail: "stream ended"},
	} {
		if _, err := b.store.RecordFailedRequest(b.ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := b.store.FailedRequests(b.ctx, "run-1")
	if err != nil || len(fs) != 2 || fs[0].HTTPStatus != 429 || fs[1].Charged != 12 || fs[1].At.IsZero() {
		t.Fatalf("failed requests = %+v, %v", fs, err)
	}
	if fs, _ := b.store.FailedRequests(b.ctx, "run-2"); len(fs) != 0 {
		t.Fatalf("another run's failed requests: %+v", fs)
	}
}

// testCheckFindsViolations proves the check can fail: it corrupts a healthy
// ledger in the ways the invariants forbid and expects each to be named.
func testCheckFindsViolations(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "telegram:42", billing.BucketCredit, billing.Micro)
	hold, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: dime, TTL: time.Minute, Key: "h"})
	if err != nil {
		t.Fatal(err)
	}
	b.mustCheck(t)

	expect := func(want string) {
		t.Helper()
		a, err := b.store.Audit(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range billing.Check(a) {
			if strings.Contains(v.String(), want) {
				return
			}
		}
		t.Fatalf("check did not report %q; got %v", want, billing.Check(a))
	}
	b.clock.Advance(2 * time.Minute)
	expect("open past its time to live")
	h.Exec(t, b.store, `UPDATE balances SET posted = posted + 5 WHERE bucket = 'credit'`)
	expect("credit: posted $1.000005 but posted entries sum to $1.00")
	h.Exec(t, b.store, `UPDATE holds SET status = 'released'`)
	expect(fmt.Sprintf("hold %d: released but its entries still hold $0.10", hold.ID))
}
