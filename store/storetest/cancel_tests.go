package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// testCancelBetweenStatements cancels each money operation after its 1st,
// 2nd, 3rd, ... statement, until one runs through, and checks after each try
// that the operation either happened whole or left no trace.
func testCancelBetweenStatements(t *testing.T, h Harness) {
	clock := NewClock()
	var (
		count    int
		cancelAt int
		cancel   context.CancelFunc
	)
	s := h.Open(t, Options{Now: clock.Now, GeneralPathOnly: true, AfterStatement: func(context.Context) {
		count++
		if count == cancelAt {
			cancel()
		}
	}})
	ctx := t.Context()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := &bundle{store: s, clock: clock, ctx: ctx}
	acc := b.fund(t, "cli:seed", billing.BucketCredit, billing.Micro)
	var holdIDs []int64
	for i := range 4 {
		h, err := s.PlaceHold(ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: dime, TTL: time.Hour, Key: fmt.Sprintf("seed-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		holdIDs = append(holdIDs, h.ID)
	}
	short, err := s.PlaceHold(ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: dime, TTL: time.Minute, Key: "short"})
	if err != nil {
		t.Fatal(err)
	}

	expiredOnce := false
	ops := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"topup of a new account", func(ctx context.Context) error {
			_, err := s.Post(ctx, billing.PostRequest{Identity: billing.Identity{Platform: "cli", ExternalID: "new"}, Bucket: billing.BucketRouted, Kind: billing.KindTopup, Amount: billing.Micro, Key: "topup-new"})
			return err
		}},
		{"place hold", func(ctx context.Context) error {
			_, err := s.PlaceHold(ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: dime, TTL: time.Hour, Key: "hold-x"})
			return err
		}},
		{"partial capture", func(ctx context.Context) error {
			_, err := s.CaptureHold(ctx, billing.CaptureRequest{HoldID: holdIDs[0], Amount: 30_000, Key: "cap-x"})
			return err
		}},
		{"release", func(ctx context.Context) error {
			_, err := s.ReleaseHold(ctx, billing.ReleaseRequest{HoldID: holdIDs[1], Key: "rel-x"})
			return err
		}},
		{"expire", func(ctx context.Context) error {
			// Past the short hold's expiry once, however many tries it takes:
			// advancing on every try would expire the hour-long holds too.
			if !expiredOnce {
				clock.Advance(2 * time.Minute)
				expiredOnce = true
			}
			hs, err := s.ExpireHolds(ctx, 10)
			if err == nil && len(hs) == 0 {
				// The previous try's connection was cut by its cancel and the
				// server has not yet released its row lock: SKIP LOCKED passes
				// the hold over, as a real sweeper would until the next sweep.
				return errStillLocked
			}
			if err == nil && (len(hs) != 1 || hs[0].ID != short.ID) {
				return fmt.Errorf("expired %v, want hold %d", hs, short.ID)
			}
			return err
		}},
	}
	for _, op := range ops {
		tries := 0
		for cancelAt = 1; ; cancelAt++ {
			if tries++; tries > 500 {
				t.Fatalf("%s: too many tries", op.name)
			}
			before := snapshot(t, s)
			var opCtx context.Context
			opCtx, cancel = context.WithCancel(ctx)
			count = 0
			err := op.run(opCtx)
			cancel()
			if err == nil {
				if count >= cancelAt {
					t.Fatalf("%s: succeeded although cancelled after statement %d", op.name, cancelAt)
				}
				if reflect.DeepEqual(before, snapshot(t, s)) {
					t.Fatalf("%s: succeeded but changed nothing", op.name)
				}
				t.Logf("%s: cancelled after each of its %d statements, no partial state", op.name, cancelAt-1)
				break
			}
			if errors.Is(err, errStillLocked) {
				if !reflect.DeepEqual(before, snapshot(t, s)) {
					t.Fatalf("%s: changed state without expiring", op.name)
				}
				cancelAt-- // the same cut again
				continue
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%s cancelled after statement %d: %v, want context.Canceled", op.name, cancelAt, err)
			}
			if after := snapshot(t, s); !reflect.DeepEqual(before, after) {
				t.Fatalf("%s cancelled after statement %d left partial state:\nbefore %+v\nafter  %+v", op.name, cancelAt, before, after)
			}
			if cancelAt > 50 {
				t.Fatalf("%s: never completed", op.name)
			}
		}
		b.mustCheck(t)
	}
}

var errStillLocked = errors.New("hold still locked by a cut connection")

// state is everything a money operation can change.
type state struct {
	Audit    billing.Audit
	Accounts int
}

func snapshot(t *testing.T, s Store) state {
	t.Helper()
	ctx := context.Background()
	a, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a.At = time.Time{}
	n := 0
	if _, err := s.AccountOf(ctx, billing.Identity{Platform: "cli", ExternalID: "new"}); err == nil {
		n = 1
	}
	return state{Audit: a, Accounts: n + len(a.Buckets)}
}
