package market

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Signal kinds reported by Signals.
const (
	KindRSIOverbought = "rsi_overbought" // RSI 14 above 70
	KindRSIOversold   = "rsi_oversold"   // RSI 14 below 30
	KindGoldenCross   = "golden_cross"   // SMA 50 crossed above SMA 200 within the last 5 bars
	KindDeathCross    = "death_cross"    // SMA 50 crossed below SMA 200 within the last 5 bars
	KindBreakout20d   = "breakout_20d"   // close above the highest high of the 20 bars before it
	KindBreakdown20d  = "breakdown_20d"  // close below the lowest low of the 20 bars before it
	KindVolumeSpike   = "volume_spike"   // volume above twice the mean of the 20 bars before it
	KindLargeMove     = "large_move"     // |1-day return| above twice the daily volatility, or above 5 %
)

// Signal is one noteworthy condition found in a series, for market scans.
//
// Score says how strong the condition is, on one scale for all kinds so that a scan can rank them: a
// condition that just meets its threshold scores 1, and the score grows with how far past it it is:
//   - rsi_overbought, rsi_oversold: 1 + the RSI's distance past 70 or 30 in tens (RSI 80 scores 2);
//   - golden_cross, death_cross: 2 on the bar of the cross, 0.2 less for each bar since, because a fresh
//     cross is news and a five-day-old one less so;
//   - breakout_20d, breakdown_20d: 1 + the percent beyond the prior 20-day high or low;
//   - volume_spike: volume ratio - 1 (3x average scores 2);
//   - large_move: the larger of |move| / (2 daily deviations) and |move| / 5 %.
type Signal struct {
	Symbol string
	Kind   string
	Detail string
	Score  float64
}

// Signals lists the conditions that hold for s as of its last bar, in the order of the kind constants. ind
// must be Compute's result for s; figures it lacks (too little history) raise no signal, and neither does a
// Suspect series (its figures span a jump that looks like a data error).
func Signals(s Series, ind Indicators) []Signal {
	if ind.Suspect() {
		return nil
	}
	var out []Signal
	add := func(kind string, score float64, format string, args ...any) {
		out = append(out, Signal{Symbol: s.Symbol, Kind: kind, Detail: fmt.Sprintf(format, args...), Score: score})
	}
	n := len(s.Bars)
	if n == 0 {
		return nil
	}
	c, h, l := s.Closes(), s.Highs(), s.Lows()

	if r := ind.RSI14; r.OK && r.V > 70 {
		add(KindRSIOverbought, 1+(r.V-70)/10, "RSI 14 is %.1f, above 70", r.V)
	}
	if r := ind.RSI14; r.OK && r.V < 30 {
		add(KindRSIOversold, 1+(30-r.V)/10, "RSI 14 is %.1f, below 30", r.V)
	}

	fast, slow := smaLast(c, 50, 6), smaLast(c, 200, 6) // the loop reads the last six bars
	for i := n - 1; i >= max(n-5, 1); i-- {
		if math.IsNaN(slow[i-1]) {
			break
		}
		ago := n - 1 - i
		when := "on the last bar"
		if ago > 0 {
			when = fmt.Sprintf("%d bars ago (%s)", ago, s.Bars[i].Date.Format("2006-01-02"))
		}
		switch {
		case fast[i-1] <= slow[i-1] && fast[i] > slow[i]:
			add(KindGoldenCross, 2-0.2*float64(ago), "SMA 50 crossed above SMA 200 %s", when)
		case fast[i-1] >= slow[i-1] && fast[i] < slow[i]:
			add(KindDeathCross, 2-0.2*float64(ago), "SMA 50 crossed below SMA 200 %s", when)
		default:
			continue
		}
		break // only the latest cross counts; an earlier one in the same five bars was undone
	}

	if n > 20 {
		hi, lo := slices.Max(h[n-21:n-1]), slices.Min(l[n-21:n-1])
		if last := c[n-1]; last > hi {
			add(KindBreakout20d, 1+PercentChange(hi, last), "close %.2f is %.2f%% above the prior 20-day high %.2f", last, PercentChange(hi, last), hi)
		} else if last < lo {
			add(KindBreakdown20d, 1-PercentChange(lo, last), "close %.2f is %.2f%% below the prior 20-day low %.2f", last, -PercentChange(lo, last), lo)
		}
	}

	if v := ind.VolumeVsAvg20; v.OK && v.V > 2 {
		add(KindVolumeSpike, v.V-1, "volume is %.1fx its 20-day average", v.V)
	}

	if r := ind.Return1D; r.OK {
		// The yardstick is the 20 daily returns before today's, so that the move does not inflate it.
		daily := math.NaN()
		if n > 21 {
			perYear := s.AssetClass().DaysPerYear()
			daily = VolatilityPerYear(c[n-22:n-1], 20, perYear)[20] / math.Sqrt(float64(perYear))
		}
		move := math.Abs(r.V)
		switch {
		case !math.IsNaN(daily) && daily > 0 && move > 2*daily:
			add(KindLargeMove, math.Max(move/(2*daily), move/5), "1-day move of %+.2f%% is %.1f daily deviations (%.2f%%)", r.V, move/daily, daily)
		case move > 5:
			add(KindLargeMove, move/5, "1-day move of %+.2f%%, beyond 5%%", r.V)
		}
	}
	return out
}

// Rank orders signals from all symbols strongest first: by Score descending, ties keeping their input order
// (a stable sort), so that a scan over symbols in a fixed order ranks reproducibly.
func Rank(all []Signal) []Signal {
	out := slices.Clone(all)
	slices.SortStableFunc(out, func(a, b Signal) int { return cmp.Compare(b.Score, a.Score) })
	return out
}
