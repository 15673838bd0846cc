package research_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// bracketRuns runs n research runs of mixed symbols (1 to 3, quick and
// standard) and counts how many were charged within their quote's cost range
// and finished within its runtime range. before is called ahead of each
// confirm (to script the fake API's answers).
func bracketRuns(t *testing.T, b *testbed.Bed, n int, model string, before func(q research.Quote)) (costIn, timeIn, calibrated int, misses []string) {
	t.Helper()
	pool := []string{"AAPL", "MSFT", "NVDA", "AMD", "GOOG", "AMZN", "META", "TSLA", "ORCL", "INTC", "IBM", "CSCO"}
	rng := rand.New(rand.NewPCG(15, 1))
	b.Fund(alice, billing.BucketCredit, 100*billing.Micro)
	for i := range n {
		k := 1 + i%3
		syms := make([]string, k)
		for j := range syms {
			syms[j] = pool[rng.IntN(len(pool))]
		}
		depth := research.Quick
		if i%2 == 1 {
			depth = research.Standard
		}
		q := quote(t, b, research.Request{Symbols: syms, Depth: depth, Model: model})
		if q.Samples > 0 {
			calibrated++
		}
		if before != nil {
			before(q)
		}
		run := confirm(t, b, q)
		ev := b.Events.WaitFinal(t, run.ID, 60*time.Second)
		r := ev.Run
		if r.State != research.Succeeded {
			t.Fatalf("run %d: %s %s", i, r.State, r.Error)
		}
		took := r.FinishedAt.Sub(r.StartedAt)
		if r.Captured >= q.CostLow && r.Captured <= q.CostHigh {
			costIn++
		} else {
			misses = append(misses, fmt.Sprintf("run %d %v %s (samples %d): charged %s, quoted %s to %s (in %d/%d..%d, out %d/%d..%d)",
				i, q.Symbols, depth, q.Samples, r.Captured, q.CostLow, q.CostHigh, r.TokensIn, q.InLow, q.InHigh, r.TokensOut, q.OutLow, q.OutEst))
		}
		if took >= q.RuntimeLow && took <= q.RuntimeHigh {
			timeIn++
		}
	}
	return costIn, timeIn, calibrated, misses
}

// bracketN is how many runs a bracket test makes: 60, or 12 under the race detector, which makes each run
// several times slower. make test runs both tests again without it, at 60 (scripts/test.sh); only that
// pass has runs enough to check how many quotes were calibrated.
func bracketN() int {
	if raceEnabled {
		return 12
	}
	return 60
}

// TestQuotesBracketChargesOffline: on the offline route the quoted cost
// range contains the charge for at least 95% of runs (the figure in
// docs/benchmarks.md comes from this test with -v).
func TestQuotesBracketChargesOffline(t *testing.T) {
	t.Parallel()
	n := bracketN()
	b := testbed.New(t, testbed.Options{Pace: 200 * time.Microsecond})
	costIn, timeIn, cal, misses := bracketRuns(t, b, n, "", nil)
	t.Logf("offline route: cost in range %d/%d (%.1f%%), runtime in range %d/%d (%.1f%%), %d quotes calibrated",
		costIn, n, 100*float64(costIn)/float64(n), timeIn, n, 100*float64(timeIn)/float64(n), cal)
	if costIn*100 < 95*n {
		t.Errorf("only %d/%d charges within their quote:\n%s", costIn, n, strings.Join(misses, "\n"))
	}
	// Runtime against its range only without the race detector, which makes
	// every run several times slower than the route's figures say.
	if !raceEnabled && timeIn*100 < 85*n {
		t.Errorf("only %d/%d runtimes within their quoted range", timeIn, n)
	}
	if n > 18 && cal < n-18 { // 6 keys (3 symbol counts x 2 depths), 3 runs each before calibration
		t.Errorf("only %d of %d quotes calibrated", cal, n)
	}
}

// TestQuotesBracketChargesFakeAPI: the same on an OpenAI-compatible route
// (the fake API), whose answers vary in length from run to run and report
// their usage.
func TestQuotesBracketChargesFakeAPI(t *testing.T) {
	t.Parallel()
	n := bracketN()
	b := testbed.New(t, testbed.Options{RoutesFor: apiRoutes})
	rng := rand.New(rand.NewPCG(15, 2))
	costIn, timeIn, cal, misses := bracketRuns(t, b, n, "gpt-test", func(q research.Quote) {
		per := q.OutHigh / int64(q.Calls)
		for range q.Calls {
			// A model writes 10% to 60% of its limit; the server sends
			// no usage, so both counts are local.
			words := per/10 + rng.Int64N(per/2)
			parts := make([]string, words)
			for i := range parts {
				parts[i] = "word "
			}
			b.LLM.Enqueue(llmtest.Stream(parts...).WithoutUsage())
		}
	})
	t.Logf("fake API route: cost in range %d/%d (%.1f%%), runtime in range %d/%d (%.1f%%), %d quotes calibrated",
		costIn, n, 100*float64(costIn)/float64(n), timeIn, n, 100*float64(timeIn)/float64(n), cal)
	if costIn*100 < 95*n {
		t.Errorf("only %d/%d charges within their quote:\n%s", costIn, n, strings.Join(misses, "\n"))
	}
	// Runtime against its range only without the race detector, which makes
	// every run several times slower than the route's figures say.
	if !raceEnabled && timeIn*100 < 85*n {
		t.Errorf("only %d/%d runtimes within their quoted range", timeIn, n)
	}
}

// TestQuoteCalibratedAfterRunsOnPostgres: after three runs of a key the next
// quote is calibrated on them (PostgreSQL store); another key stays static.
func TestQuoteCalibratedAfterRunsOnPostgres(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{Postgres: true})
	b.Fund(alice, billing.BucketCredit, 10*billing.Micro)
	for i := range 3 {
		q := quote(t, b, research.Request{Symbols: []string{"AAPL"}, Depth: research.Quick})
		if q.Samples != 0 { // fewer than three runs: the static estimate
			t.Fatalf("quote %d calibrated on %d runs", i, q.Samples)
		}
		b.Events.WaitFinal(t, confirm(t, b, q).ID, 30*time.Second)
	}
	q := quote(t, b, research.Request{Symbols: []string{"MSFT"}, Depth: research.Quick})
	if q.Samples != 3 || q.InLow > q.TokensIn || q.InHigh < q.TokensIn || q.CostHigh > q.Hold || q.CostLow > q.CostHigh {
		t.Fatalf("calibrated quote: %+v", q)
	}
	if other := quote(t, b, research.Request{Symbols: []string{"AAPL", "MSFT"}, Depth: research.Quick}); other.Samples != 0 {
		t.Fatalf("two symbols calibrated on one-symbol runs: %d", other.Samples)
	}
}

// TestCancelledRunShowsPartialReport: a run cancelled after it wrote a part
// ends cancelled, charged for what was used, and its final shows the part
// written and names the stages not run.
func TestCancelledRunShowsPartialReport(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{Pace: 3 * time.Millisecond})
	b.Fund(alice, billing.BucketCredit, billing.Micro)
	run := confirm(t, b, quote(t, b, research.Request{Symbols: []string{"AAPL", "MSFT", "NVDA"}, Depth: research.Deep}))
	b.Events.Wait(t, run.ID, 30*time.Second, func(ev research.Event) bool { return ev.Run.Done >= 3 && ev.TokensOut > 0 && !ev.Final })
	if _, err := b.Engine.Cancel(t.Context(), run.ID, alice); err != nil {
		t.Fatal(err)
	}
	final := b.Events.WaitFinal(t, run.ID, 30*time.Second)
	if final.Run.State != research.Cancelled || final.Report == nil || len(final.Report.Sections) == 0 ||
		!strings.Contains(final.Report.Missing, "cancelled") || final.Run.Captured <= 0 {
		t.Fatalf("cancelled final: state %s, report %+v, captured %s", final.Run.State, final.Report, final.Run.Captured)
	}
	b.CheckLedger()
}
