package market

import (
	"math"
	"slices"
	"time"
)

// Context is what a trader asks for next, beyond Indicators: where the price stands against its averages,
// bands and channels, how its volatility ranks, the weekly picture, its strength against a benchmark, and
// the provider's corporate actions. Units as in Indicators: prices in the series' currency, percentages in
// percent; ATR multiples are plain numbers.
type Context struct {
	// DistSMA* is the close's distance from SMA 20/50/200 in percent of the SMA; ATRSMA* the same distance in
	// multiples of ATR 14 (how many typical days' ranges away it is).
	DistSMA20, DistSMA50, DistSMA200 Value
	ATRSMA20, ATRSMA50, ATRSMA200    Value
	// ATRPct is ATR 14 as a percent of the close.
	ATRPct Value
	// Bollinger bands: SMA 20 plus and minus two population standard deviations of the last 20 closes;
	// PercentB is (close - lower) / (upper - lower): 0 at the lower band, 1 at the upper.
	BollUpper, BollLower, PercentB Value
	// Donchian channels: the highest high and lowest low of the last 20 and 55 bars, the last bar included.
	Don20High, Don20Low, Don55High, Don55Low Value
	// SwingHighs and SwingLows are the most recent pivots within a year (up to three each, newest first): a
	// bar whose high (low) is above (below) every other bar's within SwingSpan bars on each side.
	SwingHighs, SwingLows []Level
	// VolPercentile ranks today's 20-day volatility among its daily readings over the past year (the share,
	// in percent, of those readings at or below today's); not known with under half a year of readings.
	VolPercentile Value
	// Weekly figures from weekly closes (each calendar week's last close; the current week to date):
	// WeeklyTrend is "up" (close above its 10-week SMA, which is above the 40-week), "down" (the reverse) or
	// "mixed", "" without 40 weeks; WeeklyRSI14 is RSI 14 over weekly closes.
	WeeklyTrend string
	WeeklyRSI14 Value
	// Relative strength against Benchmark ("" when none was given): the symbol's 1M and 3M price return
	// minus the benchmark's over the same calendar windows, in percentage points; Beta and Correlation of
	// the daily returns of the last RelWindow days both traded.
	Benchmark          string
	Excess1M, Excess3M Value
	Beta, Correlation  Value
	BenchmarkAsOf      time.Time
	// Actions are the provider's dividends and splits dated within a year before AsOf.
	Actions []Action
}

// Level is a price on a date.
type Level struct {
	Date  time.Time
	Price float64
}

// SwingSpan is the number of bars on each side a swing high or low must top.
const SwingSpan = 5

// RelWindow is the number of common daily returns beta and correlation are computed from (three months).
const RelWindow = 63

// ComputeContext reads the Context of s as of its last bar; ind must be Compute's result for s, and bench,
// when not nil, the benchmark's series.
func ComputeContext(s Series, ind Indicators, bench *Series) Context {
	var cx Context
	n := len(s.Bars)
	if n == 0 {
		return cx
	}
	c, h, l := s.Closes(), s.Highs(), s.Lows()
	last := c[n-1]
	atr := ind.ATR14
	if atr.OK && last > 0 {
		cx.ATRPct = Known(atr.V / last * 100)
	}
	dist := func(sma Value) (Value, Value) {
		if !sma.OK || sma.V == 0 {
			return Value{}, Value{}
		}
		pct := Known(PercentChange(sma.V, last))
		if !atr.OK || atr.V == 0 {
			return pct, Value{}
		}
		return pct, Known((last - sma.V) / atr.V)
	}
	cx.DistSMA20, cx.ATRSMA20 = dist(ind.SMA20)
	cx.DistSMA50, cx.ATRSMA50 = dist(ind.SMA50)
	cx.DistSMA200, cx.ATRSMA200 = dist(ind.SMA200)

	up, lo := Bollinger(c, 20, 2)
	cx.BollUpper, cx.BollLower = Known(up[n-1]), Known(lo[n-1])
	if cx.BollUpper.OK && up[n-1] > lo[n-1] {
		cx.PercentB = Known((last - lo[n-1]) / (up[n-1] - lo[n-1]))
	}
	if n >= 20 {
		cx.Don20High, cx.Don20Low = Known(slices.Max(h[n-20:])), Known(slices.Min(l[n-20:]))
	}
	if n >= 55 {
		cx.Don55High, cx.Don55Low = Known(slices.Max(h[n-55:])), Known(slices.Min(l[n-55:]))
	}

	yearAgo := ind.AsOf.AddDate(-1, 0, 0)
	for i := n - 1 - SwingSpan; i >= SwingSpan && s.Bars[i].Date.After(yearAgo); i-- {
		if len(cx.SwingHighs) < 3 && isPivot(h, i, func(a, b float64) bool { return a > b }) {
			cx.SwingHighs = append(cx.SwingHighs, Level{s.Bars[i].Date, h[i]})
		}
		if len(cx.SwingLows) < 3 && isPivot(l, i, func(a, b float64) bool { return a < b }) {
			cx.SwingLows = append(cx.SwingLows, Level{s.Bars[i].Date, l[i]})
		}
	}

	perYear := s.AssetClass().DaysPerYear()
	vol := VolatilityPerYear(c, 20, perYear)
	var year []float64
	for i := n - 1; i >= 0 && s.Bars[i].Date.After(yearAgo); i-- {
		if !math.IsNaN(vol[i]) {
			year = append(year, vol[i])
		}
	}
	if len(year) >= perYear/2 && !math.IsNaN(vol[n-1]) {
		at := 0
		for _, v := range year {
			if v <= vol[n-1] {
				at++
			}
		}
		cx.VolPercentile = Known(float64(at) / float64(len(year)) * 100)
	}

	wk := WeeklyCloses(s.Bars)
	cx.WeeklyRSI14 = Known(RSI(wk, 14)[len(wk)-1])
	if m := len(wk); m >= 40 {
		s10, s40 := SMA(wk, 10)[m-1], SMA(wk, 40)[m-1]
		switch {
		case wk[m-1] > s10 && s10 > s40:
			cx.WeeklyTrend = "up"
		case wk[m-1] < s10 && s10 < s40:
			cx.WeeklyTrend = "down"
		default:
			cx.WeeklyTrend = "mixed"
		}
	}

	for _, a := range s.Actions {
		if a.Date.After(yearAgo) && !a.Date.After(ind.AsOf) {
			cx.Actions = append(cx.Actions, a)
		}
	}

	if bench != nil && len(bench.Bars) > 1 {
		cx.Benchmark, cx.BenchmarkAsOf = bench.Symbol, bench.AsOf()
		// The benchmark's returns are taken over the symbol's windows, ending at the symbol's as-of.
		bb := bench.Bars
		for len(bb) > 0 && bb[len(bb)-1].Date.After(ind.AsOf) {
			bb = bb[:len(bb)-1]
		}
		excess := func(v Value, from time.Time) Value {
			if !v.OK || len(bb) < 2 {
				return Value{}
			}
			b, _ := returnSince(bb, from)
			if !b.OK {
				return Value{}
			}
			return Known(v.V - b.V)
		}
		// The symbol's own window starts are by calendar: AsOf minus one and three months.
		cx.Excess1M = excess(ind.Return1M, ind.AsOf.AddDate(0, -1, 0))
		cx.Excess3M = excess(ind.Return3M, ind.AsOf.AddDate(0, -3, 0))
		cx.Beta, cx.Correlation = BetaCorrelation(s.Bars, bb, RelWindow)
	}
	return cx
}

func isPivot(xs []float64, i int, better func(a, b float64) bool) bool {
	for j := i - SwingSpan; j <= i+SwingSpan; j++ {
		if j != i && !better(xs[i], xs[j]) {
			return false
		}
	}
	return true
}

// Bollinger returns the upper and lower bands: the n-bar SMA plus and minus k population standard deviations
// of the same n closes (the convention of Bollinger's own definition and most charting tools).
func Bollinger(closes []float64, n int, k float64) (upper, lower []float64) {
	mid := SMA(closes, n)
	upper, lower = nans(len(closes)), nans(len(closes))
	for i := n - 1; i < len(closes) && n > 0; i++ {
		ss := 0.0
		for _, x := range closes[i-n+1 : i+1] {
			ss += (x - mid[i]) * (x - mid[i])
		}
		sd := math.Sqrt(ss / float64(n))
		upper[i], lower[i] = mid[i]+k*sd, mid[i]-k*sd
	}
	return upper, lower
}

// WeeklyCloses is the last close of each ISO week, oldest first; the last week may be partial.
func WeeklyCloses(bars []Bar) []float64 {
	var out []float64
	lastKey := -1
	for _, b := range bars {
		y, w := b.Date.ISOWeek()
		key := y*100 + w
		if key == lastKey {
			out[len(out)-1] = b.Close
			continue
		}
		out = append(out, b.Close)
		lastKey = key
	}
	return out
}

// BetaCorrelation computes beta (cov / var of the benchmark) and Pearson correlation of the daily simple
// returns of a and bench over a's last window daily returns whose two dates both series have bars on, so both
// returns run between the same two dates (a benchmark bar on a's holiday is spanned). Not known with fewer
// than 20 such returns.
func BetaCorrelation(a, bench []Bar, window int) (beta, corr Value) {
	bi := make(map[time.Time]int, len(bench))
	for i, b := range bench {
		bi[b.Date] = i
	}
	var ra, rb []float64
	for i := len(a) - 1; i > 0 && len(ra) < window; i-- {
		j1, ok1 := bi[a[i].Date]
		j0, ok0 := bi[a[i-1].Date]
		if !ok1 || !ok0 {
			continue
		}
		ra = append(ra, a[i].Close/a[i-1].Close-1)
		rb = append(rb, bench[j1].Close/bench[j0].Close-1)
	}
	if len(ra) < 20 {
		return Value{}, Value{}
	}
	var ma, mb float64
	for i := range ra {
		ma += ra[i]
		mb += rb[i]
	}
	ma /= float64(len(ra))
	mb /= float64(len(rb))
	var cov, va, vb float64
	for i := range ra {
		cov += (ra[i] - ma) * (rb[i] - mb)
		va += (ra[i] - ma) * (ra[i] - ma)
		vb += (rb[i] - mb) * (rb[i] - mb)
	}
	if vb == 0 || va == 0 {
		return Value{}, Value{}
	}
	return Known(cov / vb), Known(cov / math.Sqrt(va*vb))
}
