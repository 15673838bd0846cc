package market

import (
	"math"
	"testing"
)

// nan marks "not enough history" in expected slices.
var nan = math.NaN()

func assertSeries(t *testing.T, name string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: len %d, want %d", name, len(got), len(want))
	}
	for i := range want {
		if math.IsNaN(want[i]) != math.IsNaN(got[i]) || !math.IsNaN(want[i]) && !near(got[i], want[i], 1e-12) {
			t.Errorf("%s[%d] = %v, want %v", name, i, got[i], want[i])
		}
	}
}

// near compares with a relative tolerance (absolute near zero).
func near(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func TestSMA(t *testing.T) {
	t.Parallel()
	assertSeries(t, "SMA3", SMA([]float64{1, 2, 3, 4, 5}, 3), []float64{nan, nan, 2, 3, 4})
	assertSeries(t, "SMA1", SMA([]float64{7, 8}, 1), []float64{7, 8})
	assertSeries(t, "SMA too long", SMA([]float64{1, 2}, 3), []float64{nan, nan})
	assertSeries(t, "SMA empty", SMA(nil, 3), []float64{})
}

func TestEMA(t *testing.T) {
	t.Parallel()
	// alpha = 2/(3+1) = 0.5; seed = mean(2,4,6) = 4; 4+0.5*(8-4) = 6; 6+0.5*(4-6) = 5.
	assertSeries(t, "EMA3", EMA([]float64{2, 4, 6, 8, 4}, 3), []float64{nan, nan, 4, 6, 5})
	// Leading NaNs (an indicator that starts late) are skipped before seeding.
	assertSeries(t, "EMA2 after NaN", EMA([]float64{nan, nan, 1, 3, 2}, 2), []float64{nan, nan, nan, 2, 2 + 2.0/3*(2-2)})
	assertSeries(t, "EMA too long", EMA([]float64{1, 2}, 3), []float64{nan, nan})
}

func TestMACD(t *testing.T) {
	t.Parallel()
	// Worked by hand with fractions for fast 2, slow 3, signal 2 on 1,2,3,5,4,6:
	// EMA2 = -, 3/2, 5/2, 25/6, 73/18, 289/54; EMA3 = -, -, 2, 7/2, 15/4, 39/8.
	line, sig, hist := MACD([]float64{1, 2, 3, 5, 4, 6}, 2, 3, 2)
	assertSeries(t, "line", line, []float64{nan, nan, 1.0 / 2, 2.0 / 3, 11.0 / 36, 103.0 / 216})
	assertSeries(t, "signal", sig, []float64{nan, nan, nan, 7.0 / 12, 43.0 / 108, 73.0 / 162})
	assertSeries(t, "hist", hist, []float64{nan, nan, nan, 1.0 / 12, -5.0 / 54, 17.0 / 648})
}

func TestRSI(t *testing.T) {
	t.Parallel()
	// Changes +1, -0.5, +1.5, -1, +0.5, +1.5. First averages over three changes: gain 2.5/3, loss 0.5/3,
	// RS 5, RSI 100-100/6 = 250/3. Then Wilder: gain (2.5/3*2+0)/3 = 5/9, loss (0.5/3*2+1)/3 = 4/9 -> 500/9.
	got := RSI([]float64{10, 11, 10.5, 12, 11, 11.5, 13}, 3)
	assertSeries(t, "RSI3", got, []float64{nan, nan, nan, 250.0 / 3, 500.0 / 9, 580.0 / 9, 13900.0 / 171})

	assertSeries(t, "RSI only gains", RSI([]float64{1, 2, 3, 4}, 3), []float64{nan, nan, nan, 100})
	assertSeries(t, "RSI only losses", RSI([]float64{4, 3, 2, 1}, 3), []float64{nan, nan, nan, 0})
	assertSeries(t, "RSI flat", RSI([]float64{5, 5, 5, 5}, 3), []float64{nan, nan, nan, 50})
	assertSeries(t, "RSI too short", RSI([]float64{1, 2, 3}, 3), []float64{nan, nan, nan})
}

func TestATR(t *testing.T) {
	t.Parallel()
	high := []float64{10, 12, 11, 15, 13}
	low := []float64{8, 9, 9, 12, 10}
	closes := []float64{9, 11, 10, 14, 11}
	// True ranges: bar 1 max(3, 3, 0) = 3; bar 2 max(2, 0, 2) = 2; bar 3 max(3, 5, 2) = 5; bar 4 max(3, 1, 4) = 4.
	assertSeries(t, "TR", TrueRange(high, low, closes), []float64{nan, 3, 2, 5, 4})
	// ATR 2: mean(3, 2) = 2.5; (2.5*1+5)/2 = 3.75; (3.75+4)/2 = 3.875.
	assertSeries(t, "ATR2", ATR(high, low, closes, 2), []float64{nan, nan, 2.5, 3.75, 3.875})
	assertSeries(t, "ATR too short", ATR(high[:2], low[:2], closes[:2], 2), []float64{nan, nan})
}

func TestVolatility(t *testing.T) {
	t.Parallel()
	// Two returns ln(1.1) and ln(0.9): sample variance = (a-b)^2/2, annualised by sqrt(252), in percent.
	a, b := math.Log(1.1), math.Log(0.9)
	want := math.Sqrt((a-b)*(a-b)/2) * math.Sqrt(252) * 100
	assertSeries(t, "vol2", Volatility([]float64{100, 110, 99}, 2), []float64{nan, nan, want})
	// A constant growth rate has no volatility.
	got := Volatility([]float64{100, 101, 102.01, 103.0301}, 3)
	if !near(got[3], 0, 1e-9) {
		t.Errorf("constant growth: vol %v, want 0", got[3])
	}
}

func TestMaxDrawdown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{100, 120, 90, 110, 80, 130}, (80.0/120 - 1) * 100}, // the deepest trough follows the highest peak
		{[]float64{100, 50, 200, 150}, -50},                           // an early fall deeper than a later one
		{[]float64{1, 2, 3}, 0},                                       // only rises
		{[]float64{5}, 0},
	} {
		if got := MaxDrawdown(tc.xs); !near(got, tc.want, 1e-12) {
			t.Errorf("MaxDrawdown(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
	if !math.IsNaN(MaxDrawdown(nil)) {
		t.Error("MaxDrawdown(nil) should be NaN")
	}
}

func TestReturn(t *testing.T) {
	t.Parallel()
	xs := []float64{50, 80, 100, 110}
	if got := Return(xs, 1); !near(got, 10, 1e-12) {
		t.Errorf("1 bar: %v", got)
	}
	if got := Return(xs, 3); !near(got, 120, 1e-12) {
		t.Errorf("3 bars: %v", got)
	}
	if got := Return(xs, 4); !math.IsNaN(got) {
		t.Errorf("4 bars of 4 values should be NaN, got %v", got)
	}
}
