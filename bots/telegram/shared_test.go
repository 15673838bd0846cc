package telegram

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/store/postgres"
	"github.com/tokensforge/forgebot/store/postgres/pgtest"
	"github.com/tokensforge/forgebot/store/sqlite"
)

// rateStore opens a migrated store for the shared budget.
func rateStore(t *testing.T, pg bool) bots.RateStore {
	t.Helper()
	ctx := context.Background()
	if pg {
		_, cfg := pgtest.Schema(t)
		cfg.MaxConns = 4
		s, err := postgres.OpenConfig(ctx, cfg, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rates.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSharedBudgetAcrossInstances: two instances of a bot sharing the
// budget in the database make, together, the calls one instance would:
// a chat's burst of 3 at once, then one a second, and at most 20 a minute
// in a group, whichever instance makes them. With budgets of their own
// (no shared store) the same calls pass Telegram's limits.
func TestSharedBudgetAcrossInstances(t *testing.T) {
	t.Parallel()
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			t.Parallel()
			store := rateStore(t, pg)
			c := newTestClock()
			a, b := newSharedBudget(store, "4242", nil), newSharedBudget(store, "4242", nil)
			a.now, b.now = c.Now, c.Now
			const dm, grp = int64(1001), int64(-100777)
			// A private chat's burst is shared: at once, two instances make
			// as many finals as one instance alone would.
			at := func(xs ...*budget) (n int) {
				for _, x := range xs {
					if _, ok := x.final(dm); ok {
						n++
					}
				}
				return n
			}
			one := newBudget()
			one.now = c.Now
			alone := at(one, one, one, one)
			if n := at(a, b, a, b); n != alone || alone < 2 {
				t.Fatalf("%d finals at once from two instances, %d from one alone", n, alone)
			}
			// A group's minute is shared: 20 calls, alternating instances,
			// each waiting as told, all within Telegram's limits; the 21st waits
			// for the first to leave the minute.
			var sent []time.Time
			for i := range GroupPerMinute {
				x := []*budget{a, b}[i%2]
				_, at := spend(t, c, func() (time.Duration, bool) { return x.final(grp) })
				sent = append(sent, at)
			}
			if sent[len(sent)-1].Sub(sent[0]) >= time.Minute {
				t.Fatal("the test did not fill the group's minute")
			}
			if d, ok := b.final(grp); ok || d != sent[0].Add(time.Minute+margin).Sub(c.Now()) {
				t.Fatalf("21st call of the minute = %t, wait %s; want refused until the first is a minute old", ok, d)
			}
			for i := 1; i < len(sent); i++ {
				if gap := sent[i].Sub(sent[0]); i >= ChatBurst && gap < time.Duration(i-ChatBurst+1)*time.Second {
					t.Fatalf("call %d went %s after the first: faster than the chat's bucket allows", i+1, gap)
				}
			}
			// Budgets of their own let twice the burst through: what the shared one prevents.
			own1, own2 := newBudget(), newBudget()
			own1.now, own2.now = c.Now, c.Now
			n := 0
			for _, x := range []*budget{own1, own2, own1, own2, own1, own2} {
				if _, ok := x.final(dm + 1); ok {
					n++
				}
			}
			if n != 2*alone {
				t.Fatalf("separate budgets let %d through, expected %d (the case sharing prevents)", n, 2*alone)
			}
		})
	}
}
