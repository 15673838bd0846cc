package market

import (
	"context"
	"math"
	"sort"
	"testing"
	"time"
)

// The references below are written independently of context.go: different loops, a different variance
// formula (sum of squares minus square of sum), weeks keyed by the Monday of each week, and sorting for the
// percentile.
func TestContextAgainstNaiveOnAAPL(t *testing.T) {
	t.Parallel()
	s := loadAAPL(t)
	ind := Compute(s, 0)
	spy, err := NewDemo(func() time.Time { return s.AsOf() }).History(context.Background(), "SPY", 3*365*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	cx := ComputeContext(s, ind, &spy)
	n := len(s.Bars)
	c := s.Closes()
	last := c[n-1]

	// Bollinger 20, 2 with population variance as E[x²] - E[x]².
	var sum, sumSq float64
	for _, x := range c[n-20:] {
		sum += x
		sumSq += x * x
	}
	mean := sum / 20
	sd := math.Sqrt(sumSq/20 - mean*mean)
	checkValue(t, "BollUpper", cx.BollUpper, mean+2*sd)
	checkValue(t, "BollLower", cx.BollLower, mean-2*sd)
	checkValue(t, "PercentB", cx.PercentB, (last-(mean-2*sd))/(4*sd))

	checkValue(t, "ATRPct", cx.ATRPct, ind.ATR14.V*100/last)
	checkValue(t, "DistSMA50", cx.DistSMA50, (last-ind.SMA50.V)/ind.SMA50.V*100)
	checkValue(t, "ATRSMA200", cx.ATRSMA200, (last-ind.SMA200.V)/ind.ATR14.V)

	hi20, lo20, hi55, lo55 := 0.0, math.Inf(1), 0.0, math.Inf(1)
	for k, b := range s.Bars {
		if k >= n-20 {
			hi20, lo20 = math.Max(hi20, b.High), math.Min(lo20, b.Low)
		}
		if k >= n-55 {
			hi55, lo55 = math.Max(hi55, b.High), math.Min(lo55, b.Low)
		}
	}
	checkValue(t, "Don20High", cx.Don20High, hi20)
	checkValue(t, "Don20Low", cx.Don20Low, lo20)
	checkValue(t, "Don55High", cx.Don55High, hi55)
	checkValue(t, "Don55Low", cx.Don55Low, lo55)

	// Swing highs: scan forward, keep every pivot in the last year, then take the newest three.
	var highs []Level
	for k := 5; k < n-5; k++ {
		top := true
		for j := k - 5; j <= k+5; j++ {
			if j != k && s.Bars[j].High >= s.Bars[k].High {
				top = false
			}
		}
		if top && s.Bars[k].Date.After(s.AsOf().AddDate(-1, 0, 0)) {
			highs = append(highs, Level{s.Bars[k].Date, s.Bars[k].High})
		}
	}
	if len(cx.SwingHighs) != 3 {
		t.Fatalf("swing highs %+v", cx.SwingHighs)
	}
	for k, lv := range cx.SwingHighs {
		want := highs[len(highs)-1-k]
		if !lv.Date.Equal(want.Date) || lv.Price != want.Price {
			t.Errorf("swing high %d = %+v, want %+v", k, lv, want)
		}
	}

	// Volatility percentile: readings dated within the year, sorted, rank of today's.
	vol := Volatility(c, 20)
	var year []float64
	for k := range s.Bars {
		if s.Bars[k].Date.After(s.AsOf().AddDate(-1, 0, 0)) {
			year = append(year, vol[k])
		}
	}
	sort.Float64s(year)
	rank := sort.SearchFloat64s(year, vol[n-1]+1e-12)
	checkValue(t, "VolPercentile", cx.VolPercentile, float64(rank)/float64(len(year))*100)

	// Weekly closes keyed by the Monday of each week.
	var weeks []float64
	var monday time.Time
	for _, b := range s.Bars {
		m := b.Date.AddDate(0, 0, -((int(b.Date.Weekday()) + 6) % 7))
		if m.Equal(monday) {
			weeks[len(weeks)-1] = b.Close
		} else {
			weeks, monday = append(weeks, b.Close), m
		}
	}
	checkValue(t, "WeeklyRSI14", cx.WeeklyRSI14, naiveRSI(weeks, 14))
	if cx.WeeklyTrend != "up" {
		t.Errorf("weekly trend %q in AAPL's rally to 2017-02", cx.WeeklyTrend)
	}

	// Beta and correlation against the demo SPY on common dates, by the textbook formulas.
	spyOn := map[time.Time]float64{}
	for _, b := range spy.Bars {
		spyOn[b.Date] = b.Close
	}
	var ra, rb []float64
	for k := n - 1; k > 0 && len(ra) < RelWindow; k-- {
		p1, ok1 := spyOn[s.Bars[k].Date]
		p0, ok0 := spyOn[s.Bars[k-1].Date]
		if ok1 && ok0 {
			ra = append(ra, c[k]/c[k-1]-1)
			rb = append(rb, p1/p0-1)
		}
	}
	var sa, sb, sab, saa, sbb float64
	m := float64(len(ra))
	for k := range ra {
		sa, sb, sab, saa, sbb = sa+ra[k], sb+rb[k], sab+ra[k]*rb[k], saa+ra[k]*ra[k], sbb+rb[k]*rb[k]
	}
	cov := sab/m - sa*sb/m/m
	checkValue(t, "Beta", cx.Beta, cov/(sbb/m-sb*sb/m/m))
	checkValue(t, "Correlation", cx.Correlation, cov/math.Sqrt((saa/m-sa*sa/m/m)*(sbb/m-sb*sb/m/m)))
	if cx.Benchmark != "SPY" || !cx.Excess1M.OK || !cx.Excess3M.OK {
		t.Errorf("benchmark %q excess %v %v", cx.Benchmark, cx.Excess1M, cx.Excess3M)
	}

	// Against itself: beta and correlation 1, no excess return.
	self := ComputeContext(s, ind, &s)
	checkValue(t, "self Beta", self.Beta, 1)
	checkValue(t, "self Correlation", self.Correlation, 1)
	checkValue(t, "self Excess3M", self.Excess3M, 0)
}

// naiveRSI is Wilder's RSI recomputed with explicit gain and loss lists.
func naiveRSI(xs []float64, n int) float64 {
	var gains, losses []float64
	for k := 1; k < len(xs); k++ {
		d := xs[k] - xs[k-1]
		gains = append(gains, math.Max(d, 0))
		losses = append(losses, math.Max(-d, 0))
	}
	ag, al := 0.0, 0.0
	for k := 0; k < n; k++ {
		ag += gains[k] / float64(n)
		al += losses[k] / float64(n)
	}
	for k := n; k < len(gains); k++ {
		ag = (ag*float64(n-1) + gains[k]) / float64(n)
		al = (al*float64(n-1) + losses[k]) / float64(n)
	}
	return 100 * ag / (ag + al)
}

func TestContextEvents(t *testing.T) {
	t.Parallel()
	s, err := parseYahooChart("AAPL", []byte(recorded(t, "chart-AAPL-2020-08-31-to-2020-11-07.json")))
	if err != nil {
		t.Fatal(err)
	}
	cx := ComputeContext(s, Compute(s, 0), nil)
	if len(cx.Actions) != 2 || cx.Benchmark != "" || cx.Beta.OK {
		t.Fatalf("context %+v", cx)
	}
}
