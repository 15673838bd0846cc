package scheduler_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/scheduler"
)

// driftFirer records how late each fire job starts, and does nothing else.
type driftFirer struct {
	mu     sync.Mutex
	drifts []time.Duration
	got    chan struct{}
}

func (d *driftFirer) Fire(_ context.Context, _ string, at time.Time, _, _ int) error {
	d.mu.Lock()
	d.drifts = append(d.drifts, time.Since(at))
	d.mu.Unlock()
	d.got <- struct{}{}
	return nil
}

// BenchmarkSchedules: 100,000 active schedules on PostgreSQL. It reports the
// claim query's time when nothing is due (the steady poll) and for a batch
// of 200 due schedules, and the drift from each due time to its fire job
// starting, for 2,000 times due over 10 s while the claim loop runs.
func BenchmarkSchedules(b *testing.B) {
	const total, due = 100_000, 2_000
	bed := testbed.New(b, testbed.Options{Postgres: true, MaxWorkers: 200})
	ctx := context.Background()
	owner := billing.Identity{Platform: "bench", ExternalID: "1"}
	acc, err := bed.Store.EnsureAccount(ctx, owner)
	if err != nil {
		b.Fatal(err)
	}
	far := time.Now().Add(30 * 24 * time.Hour).UTC()
	ids := make([]string, total)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < total; i += 16 {
				ids[i] = fmt.Sprintf("s%016d", i)
				sc := scheduler.Schedule{ID: ids[i], AccountID: acc, Owner: owner, Status: scheduler.Active, Spec: "@daily", Zone: "UTC",
					Request: research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL"}, Depth: research.Quick, Owner: owner}, NextRunAt: far}
				if err := bed.Store.SaveSchedule(ctx, sc); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	firer := &driftFirer{got: make(chan struct{}, due)}
	bed.Store.SetFirer(firer)
	svc := &scheduler.Service{Store: bed.Store, Engine: bed.Engine}
	nothing := func(scheduler.Schedule) scheduler.Due { return scheduler.Due{Next: far} }

	b.Run("claim_query_none_due", func(b *testing.B) {
		for b.Loop() {
			if fs, err := bed.Store.ClaimDue(ctx, time.Now(), 200, nothing); err != nil || len(fs) != 0 {
				b.Fatal(fs, err)
			}
		}
	})
	b.Run("claim_batch_of_200_due", func(b *testing.B) {
		var spent time.Duration
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			at := time.Now().Add(-time.Second).UTC().Truncate(time.Microsecond)
			for j := range 200 {
				id := ids[(i*200+j)%total]
				if _, err := bed.Store.UpdateSchedule(ctx, id, func(s *scheduler.Schedule) error { s.NextRunAt = at; return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			start := time.Now()
			fs, err := bed.Store.ClaimDue(ctx, time.Now(), 200, func(s scheduler.Schedule) scheduler.Due {
				t := s.NextRunAt
				return scheduler.Due{Fire: &t, Next: far}
			})
			spent += time.Since(start)
			if err != nil || len(fs) != 200 {
				b.Fatalf("%d fires, %v", len(fs), err)
			}
			b.StopTimer()
			for range 200 {
				<-firer.got
			}
			b.StartTimer()
		}
	})

	b.Run("fire_drift_under_load", func(b *testing.B) {
		for b.Loop() {
			firer.mu.Lock()
			firer.drifts = nil
			firer.mu.Unlock()
			start := time.Now().Add(2 * time.Second)
			for j := range due {
				at := start.Add(time.Duration(j) * 10 * time.Second / due).UTC().Truncate(time.Microsecond)
				if _, err := bed.Store.UpdateSchedule(ctx, ids[j], func(s *scheduler.Schedule) error { s.NextRunAt = at; return nil }); err != nil {
					b.Fatal(err)
				}
			}
			runCtx, cancel := context.WithCancel(ctx)
			go svc.Run(runCtx)
			// decide() parses "@daily": Next after the fire is a day away.
			for range due {
				<-firer.got
			}
			cancel()
			firer.mu.Lock()
			ds := slices.Clone(firer.drifts)
			firer.mu.Unlock()
			slices.Sort(ds)
			b.ReportMetric(float64(ds[len(ds)/2].Milliseconds()), "drift_p50_ms")
			b.ReportMetric(float64(ds[len(ds)*99/100].Milliseconds()), "drift_p99_ms")
		}
	})
}
