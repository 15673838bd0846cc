package storetest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/bots"
)

// testRates: the shared chat budgets. A token bucket lets its burst through
// at once and one call per interval after, leaving what a call must leave; a
// sliding window lets Max calls per window; a call is recorded in all its
// rules or in none; concurrent callers (two instances) together get exactly
// the burst.
func testRates(t *testing.T, h Harness) {
	b := setup(t, h)
	t0 := b.clock.Now()
	take := func(at time.Time, rules ...bots.RateRule) (time.Duration, bool) {
		t.Helper()
		w, ok, err := b.store.TakeRate(b.ctx, at, rules)
		if err != nil {
			t.Fatal(err)
		}
		return w, ok
	}
	chat := bots.RateRule{Key: "t:chat:1", Every: time.Second, Burst: 3, Need: 1}
	for i := range 3 {
		if _, ok := take(t0, chat); !ok {
			t.Fatalf("call %d of a burst of 3 refused", i+1)
		}
	}
	if w, ok := take(t0, chat); ok || w < 900*time.Millisecond || w > time.Second {
		t.Fatalf("4th call at once: ok %t, wait %s; want a wait of about 1s", ok, w)
	}
	if _, ok := take(t0.Add(time.Second), chat); !ok {
		t.Fatal("a call a second later was refused")
	}
	// A progress call that must leave a token: a fresh bucket of 3 lets 2.
	keep := bots.RateRule{Key: "t:chat:2", Every: time.Second, Burst: 3, Need: 2}
	_, ok1 := take(t0, keep)
	_, ok2 := take(t0, keep)
	if _, ok3 := take(t0, keep); !ok1 || !ok2 || ok3 {
		t.Fatalf("calls leaving a token: %t %t %t, want two", ok1, ok2, ok3)
	}
	// A window of 2 a minute; a call that one rule refuses is recorded in none.
	group := bots.RateRule{Key: "t:group:1", Window: time.Minute, Max: 2, Margin: 100 * time.Millisecond}
	other := bots.RateRule{Key: "t:chat:3", Every: time.Second, Burst: 10, Need: 1}
	take(t0, group, other)
	take(t0.Add(10*time.Second), group, other)
	if w, ok := take(t0.Add(20*time.Second), group, other); ok || w != 40*time.Second+100*time.Millisecond {
		t.Fatalf("third call of a 2-a-minute window: ok %t, wait %s; want 40.1s", ok, w)
	}
	for i := range 8 { // the refused call took nothing from the bucket: 8 left of 10
		if _, ok := take(t0.Add(20*time.Second), other); !ok {
			t.Fatalf("bucket call %d refused: the refused window call took a token", i+1)
		}
	}
	if _, ok := take(t0.Add(60*time.Second+100*time.Millisecond), group); !ok {
		t.Fatal("the window's first call left and a new one was still refused")
	}
	// Ten callers at once on a fresh bucket of 3: three go.
	shared := bots.RateRule{Key: "t:chat:shared", Every: time.Second, Burst: 3, Need: 1}
	var n atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, ok, err := b.store.TakeRate(b.ctx, t0, []bots.RateRule{shared, {Key: "t:global", Every: time.Millisecond, Burst: 100, Need: 1}}); err != nil {
				t.Error(err)
			} else if ok {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if n.Load() != 3 {
		t.Fatalf("%d of 10 concurrent calls went on a bucket of 3", n.Load())
	}
}

// testRatePrune: budgets idle for the hour go (a full bucket is the same as
// none), with their old calls; a window with a recent call keeps its row and
// its call, which still counts; a second prune finds nothing.
func testRatePrune(t *testing.T, h Harness) {
	b := setup(t, h)
	t0 := b.clock.Now()
	take := func(at time.Time, r bots.RateRule) bool {
		t.Helper()
		_, ok, err := b.store.TakeRate(b.ctx, at, []bots.RateRule{r})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	idleBucket := bots.RateRule{Key: "p:chat:idle", Every: time.Second, Burst: 3, Need: 1}
	idleWindow := bots.RateRule{Key: "p:group:idle", Window: time.Minute, Max: 2}
	busyWindow := bots.RateRule{Key: "p:group:busy", Window: time.Minute, Max: 2}
	busyBucket := bots.RateRule{Key: "p:chat:busy", Every: time.Second, Burst: 1, Need: 1}
	for range 2 {
		take(t0, idleBucket)
		take(t0, idleWindow)
	}
	take(t0, busyWindow) // the row is made now; its call leaves the window
	later := t0.Add(2 * time.Hour)
	if !take(later, busyWindow) || !take(later, busyBucket) {
		t.Fatal("calls on fresh budgets refused")
	}
	// The busy window's first call (t0) was dropped by its later take.
	n, err := b.store.PruneRates(b.ctx, later.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The idle window's two calls and row, the idle bucket's row.
	if n != 4 {
		t.Fatalf("pruned %d rows, want 4", n)
	}
	if n, err := b.store.PruneRates(b.ctx, later.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("a second prune took %d rows (%v)", n, err)
	}
	// What was kept still counts: one more call fits the busy window, not two;
	// the busy bucket is empty until a second after its call.
	if !take(later, busyWindow) || take(later, busyWindow) {
		t.Fatal("the busy window lost its call in the prune")
	}
	if take(later, busyBucket) {
		t.Fatal("the busy bucket was refilled by the prune")
	}
	// A pruned bucket is as good as new.
	for i := range 3 {
		if !take(later, idleBucket) {
			t.Fatalf("call %d of a pruned bucket's burst refused", i+1)
		}
	}
}
