package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/scheduler"
)

// testScheduleLimitRace: 12 proposals of one account confirmed at once
// against a limit of 3 leave exactly 3 live schedules; the other 9 are
// refused with ErrBadSpec and stay proposed.
func testScheduleLimitRace(t *testing.T, h Harness) {
	b := setup(t, h)
	s, ok := b.store.(scheduler.Store)
	if !ok {
		t.Fatalf("%T is not a scheduler.Store", b.store)
	}
	acc := b.fund(t, "telegram:7", billing.BucketCredit, billing.Micro)
	owner := billing.Identity{Platform: "telegram", ExternalID: "7"}
	const n, limit = 12, 3
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("sRace%02d", i)
		if err := s.SaveSchedule(b.ctx, scheduler.Schedule{ID: ids[i], AccountID: acc, Owner: owner, Status: scheduler.Proposed,
			Spec: "@daily", Zone: "UTC", CreatedAt: b.clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for _, id := range ids {
		wg.Go(func() {
			<-start
			_, err := s.ActivateSchedule(b.ctx, id, limit, func(sc *scheduler.Schedule) error {
				if sc.Status != scheduler.Proposed {
					return research.ErrWrongState
				}
				sc.Status, sc.NextRunAt = scheduler.Active, b.clock.Now().Add(time.Hour)
				return nil
			})
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	activated, refused := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			activated++
		case errors.Is(err, scheduler.ErrBadSpec):
			refused++
		default:
			t.Errorf("activate: %v", err)
		}
	}
	counts, err := s.ScheduleCounts(b.ctx, acc)
	if err != nil {
		t.Fatal(err)
	}
	if activated != limit || refused != n-limit || counts[scheduler.Active] != limit || counts[scheduler.Proposed] != n-limit {
		t.Fatalf("%d activated, %d refused; counts %v; want %d live of %d", activated, refused, counts, limit, n)
	}
}

// testPruneExpired: quotes that expired and never became a run are
// deleted, a quote with a run is kept; proposals past their time are
// deleted, live schedules are kept.
func testPruneExpired(t *testing.T, h Harness) {
	b := setup(t, h)
	s, ok := b.store.(scheduler.Store)
	if !ok {
		t.Fatalf("%T is not a scheduler.Store", b.store)
	}
	acc := b.fund(t, "telegram:8", billing.BucketCredit, billing.Micro)
	owner := billing.Identity{Platform: "telegram", ExternalID: "8"}
	now := b.clock.Now()
	for i, exp := range []time.Time{now.Add(-2 * time.Hour), now.Add(-2 * time.Hour), now.Add(time.Hour)} {
		q := research.Quote{ID: fmt.Sprintf("qPrune%d", i), AccountID: acc, Status: research.QuoteOpen, CreatedAt: now.Add(-3 * time.Hour), ExpiresAt: exp,
			Request: research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL"}, Depth: research.Quick, Owner: owner}}
		if err := b.store.SaveQuote(b.ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	n, err := b.store.PruneQuotes(b.ctx, now.Add(-time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d quotes (%v), want the 2 expired", n, err)
	}
	if _, err := b.store.Quote(b.ctx, "qPrune2"); err != nil {
		t.Fatalf("the open quote went: %v", err)
	}
	if _, err := b.store.Quote(b.ctx, "qPrune0"); !errors.Is(err, research.ErrNotFound) {
		t.Fatalf("an expired quote stayed: %v", err)
	}
	for i, st := range []scheduler.Status{scheduler.Proposed, scheduler.Active} {
		if err := s.SaveSchedule(b.ctx, scheduler.Schedule{ID: fmt.Sprintf("sPrune%d", i), AccountID: acc, Owner: owner, Status: st,
			Spec: "@daily", Zone: "UTC", CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	b.clock.Advance(2 * time.Hour)
	if n, err := s.PruneProposals(b.ctx, b.clock.Now().Add(-time.Hour)); err != nil || n != 1 {
		t.Fatalf("pruned %d proposals (%v), want 1", n, err)
	}
	if counts, _ := s.ScheduleCounts(b.ctx, acc); counts[scheduler.Active] != 1 || counts[scheduler.Proposed] != 0 {
		t.Fatalf("after pruning: %v", counts)
	}
}
