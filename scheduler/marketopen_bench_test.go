package scheduler_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/scheduler"
)

// openWatch records, for the market-open benchmark, when each fire job
// started and when each run started (its first running event) and ended
// (its final event). done closes once want runs ended.
type openWatch struct {
	mu       sync.Mutex
	want     int
	fires    map[string][]time.Time // schedule id -> starts of its fire jobs (every attempt)
	started  map[string]time.Time
	finished map[string]research.Event
	ends     map[string]time.Time
	done     chan struct{}
}

func newOpenWatch() *openWatch {
	return &openWatch{fires: map[string][]time.Time{}, started: map[string]time.Time{}, finished: map[string]research.Event{},
		ends: map[string]time.Time{}}
}

// reset expects want more runs.
func (w *openWatch) reset(want int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.want = want
	w.fires, w.started, w.finished, w.ends = map[string][]time.Time{}, map[string]time.Time{}, map[string]research.Event{}, map[string]time.Time{}
	w.done = make(chan struct{})
}

func (w *openWatch) Publish(ev research.Event) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	id := ev.Run.ID
	if _, ok := w.started[id]; !ok && ev.Run.State == research.Running {
		w.started[id] = now
	}
	if ev.Final {
		if _, ok := w.finished[id]; !ok {
			w.finished[id], w.ends[id] = research.Event{Run: ev.Run}, now
			if len(w.finished) == w.want {
				close(w.done)
			}
		}
	}
}

// watchedFirer notes when each fire job starts, then fires.
type watchedFirer struct {
	next scheduler.Firer
	w    *openWatch
}

func (f watchedFirer) Fire(ctx context.Context, id string, at time.Time, attempt, maxAttempts int) error {
	f.w.mu.Lock()
	f.w.fires[id] = append(f.w.fires[id], time.Now())
	f.w.mu.Unlock()
	return f.next.Fire(ctx, id, at, attempt, maxAttempts)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMarketOpen: scans of a ten-symbol watchlist (us-megacaps, quick,
// the offline route on demo data) all due at one minute, on PostgreSQL,
// fired by the claim loops of one or two instances (each its own store,
// River client and engine on one database, as two processes would be).
// Reported from the due time: the last fire job started, every run started
// (its first running event), every run ended; and the Go CPU per scan
// (this process: both instances, not PostgreSQL). Each time must fire
// exactly once: one fire per schedule, one run per fire, every run
// succeeded, no fire job started twice.
//
// Long (minutes): run with -benchtime 1x, e.g.
// go test -run '^$' -bench BenchmarkMarketOpen -benchtime 1x -timeout 60m ./scheduler/
func BenchmarkMarketOpen(b *testing.B) {
	for _, c := range []struct {
		scans, instances int
	}{{2_000, 1}, {10_000, 2}} {
		b.Run(fmt.Sprintf("scans=%d/instances=%d", c.scans, c.instances), func(b *testing.B) { marketOpen(b, c.scans, c.instances) })
	}
}

func marketOpen(b *testing.B, scans, instances int) {
	watch := newOpenWatch()
	// 100 run workers in all, split between the instances: each instance's
	// pool is a quarter of its workers, and PostgreSQL's 100 connections are
	// shared with every other test on the machine.
	bed := testbed.New(b, testbed.Options{Postgres: true, Sink: watch, MaxWorkers: 100 / instances})
	ctx := context.Background()
	svcs := []*scheduler.Service{{Store: bed.Store, Engine: bed.Engine, Now: bed.Clock.Now}}
	bed.Store.SetFirer(watchedFirer{next: svcs[0], w: watch})
	for range instances - 1 {
		st, e := bed.InstanceWithWorkers()
		svc := &scheduler.Service{Store: st, Engine: e, Now: bed.Clock.Now}
		st.SetFirer(watchedFirer{next: svc, w: watch})
		svcs = append(svcs, svc)
	}

	// 10 schedules per account, as many as one may have.
	const perAccount = 10
	ids := make([]string, scans)
	owners := make([]billing.Identity, scans/perAccount)
	for i := range owners {
		owners[i] = billing.Identity{Platform: "bench", ExternalID: fmt.Sprint(1000 + i)}
		bed.Fund(owners[i], billing.BucketCredit, 100*billing.Micro)
	}
	far := time.Now().Add(30 * 24 * time.Hour).UTC()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < scans; i += 16 {
				owner := owners[i/perAccount]
				acc, err := bed.Store.EnsureAccount(ctx, owner)
				if err != nil {
					b.Error(err)
					return
				}
				ids[i] = fmt.Sprintf("s%016d", i)
				sc := scheduler.Schedule{ID: ids[i], AccountID: acc, Owner: owner, Status: scheduler.Active, Spec: "@daily", Zone: "UTC",
					Request: research.Request{Kind: research.KindScan, Watchlist: "us-megacaps", Depth: research.Quick, Owner: owner,
						Dest: research.Destination{Platform: "bench", ChatID: owner.ExternalID}},
					NextRunAt: far}
				if err := bed.Store.SaveSchedule(ctx, sc); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}

	for round := 1; b.Loop(); round++ {
		watch.reset(scans)
		due := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second)
		for w := range 16 {
			wg.Go(func() {
				for i := w; i < scans; i += 16 {
					if _, err := bed.Store.UpdateSchedule(ctx, ids[i], func(s *scheduler.Schedule) error { s.NextRunAt = due; return nil }); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		runCtx, stop := context.WithCancel(ctx)
		cpu0 := cpuTime()
		for _, s := range svcs {
			go s.Run(runCtx)
		}
		select {
		case <-watch.done:
		case <-time.After(30 * time.Minute):
			stop()
			watch.mu.Lock()
			b.Fatalf("%d of %d runs ended in 30 min (%d fired)", len(watch.finished), scans, len(watch.fires))
		}
		cpu := cpuTime() - cpu0
		stop()

		watch.mu.Lock()
		var lastFire, lastStart, lastEnd time.Time
		var fireLate []time.Duration
		for id, ts := range watch.fires {
			if len(ts) != 1 {
				b.Errorf("schedule %s: %d fire jobs started, want 1", id, len(ts))
			}
			fireLate = append(fireLate, ts[0].Sub(due))
			lastFire = latest(lastFire, ts[0])
		}
		var startLate []time.Duration
		for _, t := range watch.started {
			startLate = append(startLate, t.Sub(due))
			lastStart = latest(lastStart, t)
		}
		for id, ev := range watch.finished {
			if ev.Run.State != research.Succeeded {
				b.Errorf("run %s ended %s: %s", id, ev.Run.State, ev.Run.Error)
			}
			lastEnd = latest(lastEnd, watch.ends[id])
		}
		nFires, nStarted := len(watch.fires), len(watch.started)
		watch.mu.Unlock()
		if nFires != scans || nStarted != scans {
			b.Fatalf("%d schedules fired, %d runs started, want %d", nFires, nStarted, scans)
		}
		// One fire per time, one run per fire, in the store too.
		runs := map[string]bool{}
		for _, id := range ids {
			fs, err := bed.Store.Fires(ctx, id, 100)
			if err != nil {
				b.Fatal(err)
			}
			if len(fs) != round || fs[0].Outcome != scheduler.Started || fs[0].RunID == "" || !fs[0].At.Equal(due) {
				b.Fatalf("fires of %s after round %d: %+v", id, round, fs)
			}
			if runs[fs[0].RunID] {
				b.Fatalf("run %s started by two fires", fs[0].RunID)
			}
			runs[fs[0].RunID] = true
		}
		slices.Sort(fireLate)
		slices.Sort(startLate)
		b.ReportMetric(lastFire.Sub(due).Seconds(), "s_due_to_last_fire")
		b.ReportMetric(startLate[len(startLate)/2].Seconds(), "s_due_to_half_started")
		b.ReportMetric(lastStart.Sub(due).Seconds(), "s_due_to_all_started")
		b.ReportMetric(lastEnd.Sub(due).Seconds(), "s_due_to_all_ended")
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(scans), "cpu_ms/scan")
	}
	bed.CheckSettled()
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
