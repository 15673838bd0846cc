package research_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
)

// TestConcurrentConfirmsAgainstDailyLimit: 32 quotes confirmed at once
// against a daily limit that fits some of them: exactly those run, the rest
// are refused with the limit, on both stores.
func TestConcurrentConfirmsAgainstDailyLimit(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := testbed.New(t, testbed.Options{Postgres: pg, NoWorkers: true})
		acc := b.Fund(alice, billing.BucketCredit, 100*billing.Micro)
		quotes := make([]research.Quote, 32)
		for i := range quotes {
			quotes[i] = quote(t, b, research.Request{Symbols: []string{"AAPL"}, Depth: research.Quick})
		}
		hold := quotes[0].Hold
		const fits = 7
		if err := b.Store.SetLimits(t.Context(), acc, billing.Limits{Daily: fits*hold + hold/2}, alice.String()); err != nil {
			t.Fatal(err)
		}
		var (
			mu       sync.Mutex
			ok, over int
			start    = make(chan struct{})
			wg       sync.WaitGroup
		)
		for _, q := range quotes {
			if q.Hold != hold {
				t.Fatalf("quotes differ: %s and %s", q.Hold, hold)
			}
			wg.Go(func() {
				<-start
				_, _, err := b.Engine.Confirm(t.Context(), q.ID, alice, nil)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, billing.ErrSpendLimit):
					over++
				default:
					t.Errorf("confirm: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if ok != fits || over != 32-fits {
			t.Fatalf("%d confirmed and %d refused by the limit, want %d and %d", ok, over, fits, 32-fits)
		}
		bal, _ := b.Store.Balances(t.Context(), acc)
		if bal[billing.BucketCredit].Held != fits*hold {
			t.Fatalf("held %s, want %s", bal[billing.BucketCredit].Held, fits*hold)
		}
		// A new quote shows the spend and says it would pass the limit.
		q := quote(t, b, research.Request{Symbols: []string{"AAPL"}, Depth: research.Quick})
		if q.Spend == nil || q.Spend.Today != fits*hold || q.CanConfirm() || !strings.Contains(q.OverLimit, "daily limit") {
			t.Fatalf("quote at the limit: spend %+v, over %q, can confirm %v", q.Spend, q.OverLimit, q.CanConfirm())
		}
		b.CheckLedger()
	})
}
