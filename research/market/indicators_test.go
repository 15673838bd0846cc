package market

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"
)

const dayDur = 24 * time.Hour

// loadAAPL reads the whole real AAPL file through the CSV provider.
func loadAAPL(t testing.TB) Series {
	t.Helper()
	s, err := NewCSV("testdata").History(context.Background(), "AAPL", 10*365*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// aaplFixture is testdata/aapl-2017-02-16.json: the key figures, written by hand from an independent
// computation, that other packages' tests can compare a report against.
type aaplFixture struct {
	Indicators
	WindowDays int `json:"window_days"`
}

func readAAPLFixture(t *testing.T) aaplFixture {
	t.Helper()
	b, err := os.ReadFile("testdata/aapl-2017-02-16.json")
	if err != nil {
		t.Fatal(err)
	}
	var f aaplFixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// valueFields lists the Value fields of Indicators by name, so tests compare all of them, including any
// added later.
func valueFields(ind Indicators) map[string]Value {
	out := map[string]Value{}
	v := reflect.ValueOf(ind)
	for i := 0; i < v.NumField(); i++ {
		if x, ok := v.Field(i).Interface().(Value); ok {
			out[v.Type().Field(i).Name] = x
		}
	}
	return out
}

func TestComputeMatchesAAPLFixture(t *testing.T) {
	t.Parallel()
	want := readAAPLFixture(t)
	got := Compute(loadAAPL(t), time.Duration(want.WindowDays)*dayDur)

	if got.Symbol != want.Symbol || !got.AsOf.Equal(want.AsOf) || got.Source != want.Source ||
		got.Synthetic != want.Synthetic || got.Bars != want.Bars || got.Close != want.Close {
		t.Errorf("header: got %s %s %s synthetic=%v bars=%d close=%v, want %s %s %s synthetic=%v bars=%d close=%v",
			got.Symbol, got.AsOf, got.Source, got.Synthetic, got.Bars, got.Close,
			want.Symbol, want.AsOf, want.Source, want.Synthetic, want.Bars, want.Close)
	}
	wantFields := valueFields(want.Indicators)
	for name, g := range valueFields(got) {
		w := wantFields[name]
		if !w.OK {
			t.Errorf("%s: missing from the fixture", name)
			continue
		}
		// The fixture is rounded to 6 decimals.
		if !g.OK || math.Abs(g.V-w.V) > 6e-7 {
			t.Errorf("%s = %v, fixture %v", name, g, w)
		}
	}
}

// The naive implementations below compute each indicator a second way, from its closed form or by brute
// force, so that an error in the fast code is not repeated in its check.

// naiveSmoothed evaluates a seeded exponential smoothing as an explicit weighted sum:
// s_i = (1-a)^(i-k) * seed + sum_{j=k+1..i} a (1-a)^(i-j) x_j, where seed is the mean of the n values ending
// at k.
func naiveSmoothed(xs []float64, first, n int, a float64) []float64 {
	out := make([]float64, len(xs))
	for i := range out {
		out[i] = math.NaN()
	}
	k := first + n - 1
	seed := 0.0
	for _, x := range xs[first : k+1] {
		seed += x / float64(n)
	}
	for i := k; i < len(xs); i++ {
		v := math.Pow(1-a, float64(i-k)) * seed
		for j := k + 1; j <= i; j++ {
			v += a * math.Pow(1-a, float64(i-j)) * xs[j]
		}
		out[i] = v
	}
	return out
}

func TestIndicatorsAgainstNaiveOnAAPL(t *testing.T) {
	t.Parallel()
	s := loadAAPL(t)
	c, h, l := s.Closes(), s.Highs(), s.Lows()
	n := len(c)
	const tol = 1e-9

	compare := func(name string, got, want []float64, from int) {
		t.Helper()
		for i := from; i < n; i++ {
			if !near(got[i], want[i], tol) {
				t.Fatalf("%s[%d] (%s) = %v, naive %v", name, i, s.Bars[i].Date.Format(time.DateOnly), got[i], want[i])
			}
		}
		for i := 0; i < from; i++ {
			if !math.IsNaN(got[i]) {
				t.Fatalf("%s[%d] = %v, want NaN before index %d", name, i, got[i], from)
			}
		}
	}

	for _, p := range []int{20, 50, 200} {
		want := make([]float64, n)
		for i := p - 1; i < n; i++ {
			for j := i - p + 1; j <= i; j++ {
				want[i] += c[j]
			}
			want[i] /= float64(p)
		}
		compare("SMA", SMA(c, p), want, p-1)
	}

	ema12, ema26 := naiveSmoothed(c, 0, 12, 2.0/13), naiveSmoothed(c, 0, 26, 2.0/27)
	compare("EMA12", EMA(c, 12), ema12, 11)
	compare("EMA26", EMA(c, 26), ema26, 25)
	line := make([]float64, n)
	for i := range line {
		line[i] = ema12[i] - ema26[i]
	}
	sig := naiveSmoothed(line, 25, 9, 2.0/10)
	gotLine, gotSig, gotHist := MACD(c, 12, 26, 9)
	compare("MACD", gotLine, line, 25)
	compare("MACDSignal", gotSig, sig, 33)
	hist := make([]float64, n)
	for i := range hist {
		hist[i] = line[i] - sig[i]
	}
	compare("MACDHist", gotHist, hist, 33)

	// Wilder's smoothing is exponential smoothing with a = 1/n; RSI = 100 * gain / (gain + loss).
	gains, losses := make([]float64, n), make([]float64, n)
	for i := 1; i < n; i++ {
		gains[i] = math.Max(c[i]-c[i-1], 0)
		losses[i] = math.Max(c[i-1]-c[i], 0)
	}
	ag, al := naiveSmoothed(gains, 1, 14, 1.0/14), naiveSmoothed(losses, 1, 14, 1.0/14)
	rsi := make([]float64, n)
	for i := range rsi {
		rsi[i] = 100 * ag[i] / (ag[i] + al[i])
	}
	compare("RSI14", RSI(c, 14), rsi, 14)

	tr := make([]float64, n)
	for i := 1; i < n; i++ {
		tr[i] = max(h[i]-l[i], math.Abs(h[i]-c[i-1]), math.Abs(l[i]-c[i-1]))
	}
	compare("ATR14", ATR(h, l, c, 14), naiveSmoothed(tr, 1, 14, 1.0/14), 14)

	// Volatility through the one-pass sum-of-squares formula instead of the two-pass one.
	vol := make([]float64, n)
	for i := 20; i < n; i++ {
		var sum, sumSq float64
		for j := i - 19; j <= i; j++ {
			r := math.Log(c[j]) - math.Log(c[j-1])
			sum += r
			sumSq += r * r
		}
		vol[i] = math.Sqrt((sumSq-sum*sum/20)/19*252) * 100
	}
	compare("Volatility20", Volatility(c, 20), vol, 20)

	// Drawdown over the 182-day window by brute force over all pairs.
	ind := Compute(s, 182*dayDur)
	worst := 0.0
	var inWindow []float64
	for _, b := range s.Bars {
		if b.Date.Format(time.DateOnly) > "2016-08-18" {
			inWindow = append(inWindow, b.Close)
		}
	}
	for i := range inWindow {
		for j := i + 1; j < len(inWindow); j++ {
			worst = math.Min(worst, (inWindow[j]/inWindow[i]-1)*100)
		}
	}
	checkValue(t, "MaxDrawdown", ind.MaxDrawdown, worst)

	hi, lo := 0.0, math.Inf(1)
	for _, b := range s.Bars {
		if b.Date.Format(time.DateOnly) > "2016-02-16" {
			hi, lo = math.Max(hi, b.High), math.Min(lo, b.Low)
		}
	}
	checkValue(t, "High52w", ind.High52w, hi)
	checkValue(t, "Low52w", ind.Low52w, lo)
	checkValue(t, "FromHigh52w", ind.FromHigh52w, (c[n-1]-hi)/hi*100)
	checkValue(t, "FromLow52w", ind.FromLow52w, (c[n-1]-lo)/lo*100)

	closeOn := func(date string) float64 {
		for _, b := range s.Bars {
			if b.Date.Format(time.DateOnly) == date {
				return b.Close
			}
		}
		t.Fatalf("no bar on %s", date)
		return 0
	}
	checkValue(t, "Return1D", ind.Return1D, (c[n-1]-closeOn("2017-02-15"))/closeOn("2017-02-15")*100)
	checkValue(t, "Return1W", ind.Return1W, (c[n-1]-closeOn("2017-02-09"))/closeOn("2017-02-09")*100)
	checkValue(t, "Return1M", ind.Return1M, (c[n-1]-closeOn("2017-01-13"))/closeOn("2017-01-13")*100) // 2017-01-16 was a holiday
	checkValue(t, "Return3M", ind.Return3M, (c[n-1]-closeOn("2016-11-16"))/closeOn("2016-11-16")*100)
	checkValue(t, "ReturnYTD", ind.ReturnYTD, (c[n-1]-closeOn("2016-12-30"))/closeOn("2016-12-30")*100)

	volSum := 0.0
	for _, b := range s.Bars[n-21 : n-1] {
		volSum += b.Volume
	}
	checkValue(t, "VolumeVsAvg20", ind.VolumeVsAvg20, s.Bars[n-1].Volume*20/volSum)
}

func checkValue(t *testing.T, name string, got Value, want float64) {
	t.Helper()
	if !got.OK || !near(got.V, want, 1e-9) {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

// bars builds a weekday series from closes, with a 1 % range around each close and constant volume.
func bars(sym string, start time.Time, closes ...float64) Series {
	s := Series{Symbol: sym, Source: "test"}
	d := start
	for _, c := range closes {
		for d.Weekday() == time.Saturday || d.Weekday() == time.Sunday {
			d = d.AddDate(0, 0, 1)
		}
		s.Bars = append(s.Bars, Bar{Date: d, Open: c, High: c * 1.01, Low: c * 0.99, Close: c, Volume: 1000})
		d = d.AddDate(0, 0, 1)
	}
	return s
}

func TestComputeReportsMissingHistory(t *testing.T) {
	t.Parallel()
	closes := make([]float64, 10)
	for i := range closes {
		closes[i] = 100 + float64(i)
	}
	ind := Compute(bars("X", time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC), closes...), 182*dayDur)
	known := map[string]bool{"Return1D": true, "Return1W": true}
	for name, v := range valueFields(ind) {
		if v.OK != known[name] {
			t.Errorf("%s: OK = %v with 10 bars", name, v.OK)
		}
		if !v.OK && v.V != 0 {
			t.Errorf("%s: unknown value carries %v", name, v.V)
		}
	}
	if ind.Bars != 10 || ind.Close != 109 {
		t.Errorf("bars %d close %v", ind.Bars, ind.Close)
	}

	empty := Compute(Series{Symbol: "Y"}, 0)
	for name, v := range valueFields(empty) {
		if v.OK {
			t.Errorf("empty series: %s known", name)
		}
	}
}

func TestComputeWindowsNeedCoverage(t *testing.T) {
	t.Parallel()
	aapl := loadAAPL(t)
	// Eight months of data: no 52-week figures, and no drawdown over a year, but one over six months.
	short := aapl
	short.Bars = aapl.Bars[len(aapl.Bars)-170:]
	ind := Compute(short, 365*dayDur)
	for name, v := range map[string]Value{"High52w": ind.High52w, "Low52w": ind.Low52w,
		"FromHigh52w": ind.FromHigh52w, "FromLow52w": ind.FromLow52w, "MaxDrawdown": ind.MaxDrawdown} {
		if v.OK {
			t.Errorf("%s known from eight months of data: %v", name, v)
		}
	}
	if !Compute(short, 182*dayDur).MaxDrawdown.OK {
		t.Error("six-month drawdown should be known from eight months of data")
	}
	// A window of 0 means the whole series.
	if v := Compute(short, 0).MaxDrawdown; !v.OK || v.V > 0 {
		t.Errorf("whole-series drawdown %v", v)
	}

	// Only this year's bars: no year-to-date return.
	var thisYear Series
	for _, b := range aapl.Bars {
		if b.Date.Year() == 2017 {
			thisYear.Bars = append(thisYear.Bars, b)
		}
	}
	if v := Compute(thisYear, 0).ReturnYTD; v.OK {
		t.Errorf("YTD without a 2016 close: %v", v)
	}
}

func TestComputeZeroVolume(t *testing.T) {
	t.Parallel()
	closes := make([]float64, 30)
	for i := range closes {
		closes[i] = 1.1 + float64(i%3)*0.01
	}
	s := bars("EURUSD=X", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), closes...)
	for i := range s.Bars {
		s.Bars[i].Volume = 0
	}
	if v := Compute(s, 0).VolumeVsAvg20; v.OK {
		t.Errorf("volume ratio without volume: %v", v)
	}
}

func TestValueJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(struct{ A, B Value }{Known(1.5), Value{}})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"A":1.5,"B":null}` {
		t.Errorf("got %s", b)
	}
	var back struct{ A, B Value }
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.A != Known(1.5) || back.B.OK {
		t.Errorf("round trip: %+v", back)
	}
	if Known(math.NaN()).OK || Known(math.Inf(1)).OK {
		t.Error("NaN and Inf must not be known")
	}
	if Known(0).String() != "0" || (Value{}).String() != "n/a" {
		t.Error("String")
	}
	// Indicators marshal whole, with nulls, never NaN (which encoding/json refuses).
	if _, err := json.Marshal(Compute(bars("X", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), 1, 2, 3), 0)); err != nil {
		t.Fatal(err)
	}
}

// TestLatestOnlyIsBitIdentical: the shortcuts Compute and Signals take for
// the figures they read only at the end (smaLast, volatility of the last
// returns, each log return once) give the full computations' numbers to
// the bit, on the AAPL fixture and on demo walks of every length up to a
// few hundred bars, so no report changes.
func TestLatestOnlyIsBitIdentical(t *testing.T) {
	t.Parallel()
	// The volatility before the log returns were computed once.
	oldVol := func(closes []float64, n, perYear int) []float64 {
		out := nans(len(closes))
		for i := n; i < len(closes); i++ {
			mean := 0.0
			for j := i - n + 1; j <= i; j++ {
				mean += math.Log(closes[j] / closes[j-1])
			}
			mean /= float64(n)
			ss := 0.0
			for j := i - n + 1; j <= i; j++ {
				d := math.Log(closes[j]/closes[j-1]) - mean
				ss += d * d
			}
			out[i] = math.Sqrt(ss/float64(n-1)) * math.Sqrt(float64(perYear)) * 100
		}
		return out
	}
	same := func(a, b float64) bool {
		return math.Float64bits(a) == math.Float64bits(b) || math.IsNaN(a) && math.IsNaN(b)
	}
	series := [][]float64{loadAAPL(t).Closes()}
	walk := demoWalk("NVDA", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC))
	full := make([]float64, len(walk))
	for i, b := range walk {
		full[i] = b.Close
	}
	for n := 0; n <= 260 && n <= len(full); n += 13 {
		series = append(series, full[:n])
	}
	for _, c := range series {
		n := len(c)
		for _, p := range []int{20, 50, 200} {
			want, got := SMA(c, p), smaLast(c, p, 6)
			for i := max(0, n-6); i < n; i++ {
				if !same(got[i], want[i]) {
					t.Fatalf("smaLast(%d bars, %d)[%d] = %v, SMA %v", n, p, i, got[i], want[i])
				}
			}
		}
		want := oldVol(c, 20, 252)
		if got := VolatilityPerYear(c, 20, 252); n > 0 && !slices.EqualFunc(got, want, same) {
			t.Fatalf("VolatilityPerYear of %d bars changed", n)
		}
		if n > 0 && !same(last(VolatilityPerYear(c[max(0, n-21):], 20, 252)).V, last(want).V) {
			t.Fatalf("volatility of the last returns of %d bars differs", n)
		}
	}
}
