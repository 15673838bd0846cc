package market

import (
	"math"
)

// The building blocks below work on plain slices so they can be tested and reused on their own. Each returns
// a slice aligned with its input: out[i] is the indicator as of bar i, and NaN where bar i does not yet have
// the history the indicator needs. NaN, not zero, because zero is a meaningful value for most of them.
// Compute turns the last element into a Value.

// SMA is the n-bar simple moving average: out[i] is the mean of xs[i-n+1..i]. Each window is summed afresh
// rather than kept as a running sum, so long series do not accumulate rounding drift.
func SMA(xs []float64, n int) []float64 {
	out := nans(len(xs))
	if n <= 0 {
		return out
	}
	for i := n - 1; i < len(xs); i++ {
		sum := 0.0
		for _, x := range xs[i-n+1 : i+1] {
			sum += x
		}
		out[i] = sum / float64(n)
	}
	return out
}

// smaLast is SMA(xs, n) at the last k indices only, NaN before them: the same numbers where it has any, for
// callers that read only the latest values (a scan's quote reads three averages of ten long series, and a
// full SMA 200 of each was a tenth of its CPU).
func smaLast(xs []float64, n, k int) []float64 {
	out := nans(len(xs))
	if n <= 0 {
		return out
	}
	for i := max(n-1, len(xs)-k); i < len(xs); i++ {
		sum := 0.0
		for _, x := range xs[i-n+1 : i+1] {
			sum += x
		}
		out[i] = sum / float64(n)
	}
	return out
}

// EMA is the n-bar exponential moving average with smoothing 2/(n+1). It is seeded with the SMA of the
// first n values (so its first value is at index n-1), the convention of TA-Lib and most charting tools;
// seeding with the first value instead would give a different number for a long while. Leading NaNs in xs are
// skipped, so EMA of an indicator that starts late (the MACD line) works.
func EMA(xs []float64, n int) []float64 {
	out := nans(len(xs))
	if n <= 0 {
		return out
	}
	first := 0
	for first < len(xs) && math.IsNaN(xs[first]) {
		first++
	}
	seed := first + n - 1
	if seed >= len(xs) {
		return out
	}
	sum := 0.0
	for _, x := range xs[first : seed+1] {
		sum += x
	}
	e := sum / float64(n)
	out[seed] = e
	alpha := 2 / float64(n+1)
	for i := seed + 1; i < len(xs); i++ {
		e += alpha * (xs[i] - e)
		out[i] = e
	}
	return out
}

// MACD returns the MACD line (EMA fast minus EMA slow of closes), its signal line (EMA of the line over
// signal bars, seeded like EMA from the line's first values) and the histogram (line minus signal). With
// 12, 26, 9 the line starts at index 25 and the signal and histogram at index 33.
func MACD(closes []float64, fast, slow, signal int) (line, sig, hist []float64) {
	f, s := EMA(closes, fast), EMA(closes, slow)
	line = make([]float64, len(closes))
	for i := range closes {
		line[i] = f[i] - s[i] // NaN until both exist
	}
	sig = EMA(line, signal)
	hist = make([]float64, len(closes))
	for i := range closes {
		hist[i] = line[i] - sig[i]
	}
	return line, sig, hist
}

// RSI is Wilder's relative strength index over n bars: the first average gain and loss are plain means of
// the first n changes, later ones are smoothed as avg = (avg*(n-1) + current)/n. The first value is at index
// n. With no losses in the averages RSI is 100; with neither gains nor losses (a flat line) it is 50.
func RSI(closes []float64, n int) []float64 {
	out := nans(len(closes))
	if n <= 0 || len(closes) <= n {
		return out
	}
	var gain, loss float64
	for i := 1; i <= n; i++ {
		g, l := change(closes[i-1], closes[i])
		gain += g
		loss += l
	}
	gain /= float64(n)
	loss /= float64(n)
	out[n] = rsiOf(gain, loss)
	for i := n + 1; i < len(closes); i++ {
		g, l := change(closes[i-1], closes[i])
		gain = (gain*float64(n-1) + g) / float64(n)
		loss = (loss*float64(n-1) + l) / float64(n)
		out[i] = rsiOf(gain, loss)
	}
	return out
}

func change(prev, cur float64) (gain, loss float64) {
	d := cur - prev
	if d > 0 {
		return d, 0
	}
	return 0, -d
}

func rsiOf(gain, loss float64) float64 {
	switch {
	case loss == 0 && gain == 0:
		return 50
	case loss == 0:
		return 100
	}
	return 100 - 100/(1+gain/loss)
}

// TrueRange is the larger of high-low and the distances from the previous close to high and low. The first
// bar has no previous close, so its true range is NaN rather than a high-low that would understate gaps.
func TrueRange(high, low, closes []float64) []float64 {
	mustSameLen(len(high), len(low), len(closes))
	out := nans(len(closes))
	for i := 1; i < len(closes); i++ {
		out[i] = math.Max(high[i]-low[i], math.Max(math.Abs(high[i]-closes[i-1]), math.Abs(low[i]-closes[i-1])))
	}
	return out
}

// ATR is Wilder's average true range over n bars: the mean of the first n true ranges (bars 1..n), then
// smoothed as atr = (atr*(n-1) + tr)/n. The first value is at index n, as in TA-Lib.
func ATR(high, low, closes []float64, n int) []float64 {
	tr := TrueRange(high, low, closes)
	out := nans(len(closes))
	if n <= 0 || len(closes) <= n {
		return out
	}
	atr := 0.0
	for _, x := range tr[1 : n+1] {
		atr += x
	}
	atr /= float64(n)
	out[n] = atr
	for i := n + 1; i < len(closes); i++ {
		atr = (atr*float64(n-1) + tr[i]) / float64(n)
		out[i] = atr
	}
	return out
}

// TradingDaysPerYear is the equity calendar's year of exchange days; see AssetClass.DaysPerYear for others.
const TradingDaysPerYear = 252

// Volatility is VolatilityPerYear on the equity calendar (252 bars a year).
func Volatility(closes []float64, n int) []float64 {
	return VolatilityPerYear(closes, n, TradingDaysPerYear)
}

// VolatilityPerYear is realised volatility in percent a year: the sample standard deviation (n-1 in the
// denominator) of the last n daily log returns, times sqrt(perYear), perYear being the bars in a year on the
// asset's calendar (252 for equities, 365 for crypto). out[i] uses the returns ending at bar i, so the first
// value is at index n.
func VolatilityPerYear(closes []float64, n, perYear int) []float64 {
	out := nans(len(closes))
	if n < 2 {
		return out
	}
	// Each log return once (the logarithm was most of a scan's indicator
	// CPU when every window took its own 2n); the sums below add the same
	// numbers in the same order, so the figures are unchanged to the bit.
	rets := make([]float64, len(closes))
	for j := 1; j < len(closes); j++ {
		rets[j] = math.Log(closes[j] / closes[j-1])
	}
	for i := n; i < len(closes); i++ {
		mean := 0.0
		for j := i - n + 1; j <= i; j++ {
			mean += rets[j]
		}
		mean /= float64(n)
		ss := 0.0
		for j := i - n + 1; j <= i; j++ {
			d := rets[j] - mean
			ss += d * d
		}
		out[i] = math.Sqrt(ss/float64(n-1)) * math.Sqrt(float64(perYear)) * 100
	}
	return out
}

// MaxDrawdown is the largest fall from a running peak to a later value, in percent (zero or negative: -12.5
// means the worst peak-to-trough fall was 12.5 %). It is NaN for an empty slice.
func MaxDrawdown(xs []float64) float64 {
	dd, _, _ := drawdown(xs)
	return dd
}

// drawdown is MaxDrawdown with the indices of the peak and the trough (both 0 when there was no fall).
func drawdown(xs []float64) (worst float64, peakAt, troughAt int) {
	if len(xs) == 0 {
		return math.NaN(), 0, 0
	}
	peak, at := xs[0], 0
	for i, x := range xs {
		if x > peak {
			peak, at = x, i
		}
		if d := (x/peak - 1) * 100; d < worst {
			worst, peakAt, troughAt = d, at, i
		}
	}
	return worst, peakAt, troughAt
}

// PercentChange is the change from a to b in percent: 10 for 100 -> 110.
func PercentChange(from, to float64) float64 { return (to/from - 1) * 100 }

// Return is the percent change of the last value over the value `bars` bars before it, or NaN when the
// slice is too short.
func Return(closes []float64, bars int) float64 {
	n := len(closes)
	if bars <= 0 || n <= bars {
		return math.NaN()
	}
	return PercentChange(closes[n-1-bars], closes[n-1])
}

func nans(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = math.NaN()
	}
	return out
}

func mustSameLen(a, b, c int) {
	if a != b || b != c {
		panic("market: high, low and close slices differ in length")
	}
}
