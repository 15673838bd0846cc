// Package storetest is the conformance suite every billing.Store passes:
// store/postgres and store/sqlite run the same tests against a real database.
package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// Store is a billing.Store that can migrate its own schema.
type Store interface {
	billing.Store
	research.Store
	bots.RateStore
	Migrate(ctx context.Context) ([]string, error)
	CheckSchema(ctx context.Context) error
}

// Options are what a test asks of a new store.
type Options struct {
	Now            func() time.Time
	AfterStatement func(ctx context.Context)
	// GeneralPathOnly turns off a store's single-statement fast paths, so a
	// test can cancel between the statements of the general transaction.
	GeneralPathOnly bool
}

// Harness opens fresh, empty (unmigrated) stores for one test each, and runs
// raw SQL against them for tests that must corrupt data on purpose.
type Harness struct {
	Open func(t *testing.T, opts Options) Store
	Exec func(t *testing.T, s Store, sql string)
}

// Clock is a settable test clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock starts a clock at a fixed instant.
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// bundle is what most tests need.
type bundle struct {
	store Store
	clock *Clock
	ctx   context.Context
}

func setup(t *testing.T, h Harness) *bundle {
	t.Helper()
	clock := NewClock()
	s := h.Open(t, Options{Now: clock.Now})
	ctx := t.Context()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return &bundle{store: s, clock: clock, ctx: ctx}
}

// fund creates an account for who and tops its bucket up.
func (b *bundle) fund(t *testing.T, who string, bucket billing.Bucket, amount billing.Money) billing.AccountID {
	t.Helper()
	id, err := billing.ParseIdentity(who)
	if err != nil {
		t.Fatal(err)
	}
	e, err := b.store.Post(b.ctx, billing.PostRequest{
		Identity: id, Bucket: bucket, Kind: billing.KindTopup, Amount: amount,
		Key: "fund:" + who + ":" + string(bucket) + ":" + amount.String(), Actor: "test",
	})
	if err != nil {
		t.Fatalf("fund %s: %v", who, err)
	}
	return e.AccountID
}

func (b *bundle) balance(t *testing.T, acc billing.AccountID, bucket billing.Bucket) billing.Balance {
	t.Helper()
	bal, err := b.store.Balances(b.ctx, acc)
	if err != nil {
		t.Fatalf("balances: %v", err)
	}
	return bal[bucket]
}

// mustCheck fails the test if the ledger's invariants are broken.
func (b *bundle) mustCheck(t *testing.T) {
	t.Helper()
	a, err := b.store.Audit(b.ctx)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	for _, v := range billing.Check(a) {
		t.Errorf("ledger check: %s", v)
	}
}

// Run runs every conformance test against the harness's store.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"Migrations", testMigrations},
		{"Accounts", testAccounts},
		{"Link", testLink},
		{"LinkCodes", testLinkCodes},
		{"Watchlists", testWatchlists},
		{"PostIdempotency", testPostIdempotency},
		{"ConcurrentSameKey", testConcurrentSameKey},
		{"NegativeAdjustment", testNegativeAdjustment},
		{"ConcurrentHolds", testConcurrentHolds},
		{"HoldLifecycle", testHoldLifecycle},
		{"BucketsNeverLeak", testBucketsNeverLeak},
		{"CancelBetweenStatements", testCancelBetweenStatements},
		{"Receipts", testReceipts},
		{"CheckFindsViolations", testCheckFindsViolations},
		{"EndedRunIsFrozen", testEndedRunIsFrozen},
		{"ContinueRunExtends", testContinueRunExtends},
		{"RunStages", testRunStages},
		{"Rates", testRates},
		{"RatePrune", testRatePrune},
		{"Payments", testPayments},
		{"RefundDebt", testRefundDebt},
		{"WelcomeGrant", testWelcomeGrant},
		{"SpendLimits", testSpendLimits},
		{"ScheduleLimitRace", testScheduleLimitRace},
		{"PruneExpired", testPruneExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, h)
		})
	}
}
