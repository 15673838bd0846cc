package market_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tokensforge/forgebot/research/market"
)

func ExampleNormalizeSymbol() {
	for _, raw := range []string{"aapl", "BRK.B", "^gspc", "7203.T", "../etc/passwd"} {
		sym, err := market.NormalizeSymbol(raw)
		fmt.Printf("%q -> %q %v\n", raw, sym, err)
	}
	// Output:
	// "aapl" -> "AAPL" <nil>
	// "BRK.B" -> "BRK-B" <nil>
	// "^gspc" -> "^GSPC" <nil>
	// "7203.T" -> "7203.T" <nil>
	// "../etc/passwd" -> "" invalid symbol "../etc/passwd": character '/' not allowed
}

// Compute reads the facts a report is written from. Figures without enough history print as n/a.
func ExampleCompute() {
	ctx := context.Background()
	s, err := market.NewCSV("testdata").History(ctx, "AAPL", 400*24*time.Hour)
	if err != nil {
		fmt.Println(err)
		return
	}
	ind := market.Compute(s, 182*24*time.Hour)
	fmt.Printf("%s as of %s (%s, %d bars): close %.2f\n", ind.Symbol, ind.AsOf.Format(time.DateOnly), ind.Source, ind.Bars, ind.Close)
	fmt.Printf("SMA 50 %.2f, SMA 200 %.2f, RSI 14 %.1f\n", ind.SMA50.V, ind.SMA200.V, ind.RSI14.V)
	fmt.Printf("52-week high %.2f (%.2f%%), YTD %+.2f%%\n", ind.High52w.V, ind.FromHigh52w.V, ind.ReturnYTD.V)

	short := market.Compute(market.Series{Symbol: "NEW", Bars: s.Bars[len(s.Bars)-30:]}, 0)
	fmt.Println("SMA 200 from 30 bars:", short.SMA200)
	// Output:
	// AAPL as of 2017-02-16 (csv, 277 bars): close 135.35
	// SMA 50 120.96, SMA 200 109.13, RSI 14 88.7
	// 52-week high 136.27 (-0.68%), YTD +16.86%
	// SMA 200 from 30 bars: n/a
}

// A scan fetches a preset, computes, collects signals and ranks them. Demo data stands in for a real
// provider here; in production pass market.NewYahoo().
func ExampleRank() {
	today := func() time.Time { return time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC) }
	series, errs := market.FetchAll(context.Background(), market.NewDemo(today), market.Presets["us-megacaps"], 400*24*time.Hour)
	var all []market.Signal
	for _, sym := range market.Presets["us-megacaps"] {
		if s, ok := series[sym]; ok {
			all = append(all, market.Signals(s, market.Compute(s, 182*24*time.Hour))...)
		}
	}
	fmt.Println("failures:", len(errs))
	for _, sig := range market.Rank(all) {
		fmt.Printf("%-5s %-14s %.2f  %s\n", sig.Symbol, sig.Kind, sig.Score, sig.Detail)
	}
	// Output:
	// failures: 0
	// META  large_move     1.21  1-day move of -4.36% is 2.4 daily deviations (1.80%)
}
