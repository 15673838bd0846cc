package market

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

var signalStart = time.Date(2023, 1, 2, 0, 0, 0, 0, time.UTC)

// choppy is a trendless series cycling 99.25, 99.75, 100.25, 100.75: RSI near 50, no breakouts, a daily
// volatility of about 0.8 %, so that one appended bar can set off exactly the signal a test wants.
func choppy(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = 99.25 + float64(i%4)*0.5
	}
	return out
}

func kinds(sigs []Signal) []string {
	var out []string
	for _, s := range sigs {
		out = append(out, s.Kind)
	}
	return out
}

func signalsOf(s Series) []Signal { return Signals(s, Compute(s, 0)) }

func TestSignalsQuietSeries(t *testing.T) {
	t.Parallel()
	// A slight drift keeps SMA 50 clear of SMA 200: on a dead-flat series they are equal and wiggle across
	// each other.
	closes := choppy(260)
	for i := range closes {
		closes[i] += 0.005 * float64(i)
	}
	if got := signalsOf(bars("Q", signalStart, closes...)); len(got) != 0 {
		t.Errorf("quiet series raised %v", got)
	}
	if got := signalsOf(Series{Symbol: "E"}); got != nil {
		t.Errorf("empty series raised %v", got)
	}
}

func TestSignalVolumeSpike(t *testing.T) {
	t.Parallel()
	s := bars("V", signalStart, choppy(40)...)
	s.Bars[39].Volume = 3000 // 3x the constant 1000
	got := signalsOf(s)
	if !slices.Equal(kinds(got), []string{KindVolumeSpike}) || got[0].Score != 2 || got[0].Symbol != "V" {
		t.Fatalf("got %+v", got)
	}
	s.Bars[39].Volume = 2000 // exactly twice is not above twice
	if got := signalsOf(s); len(got) != 0 {
		t.Errorf("2.0x raised %v", got)
	}
}

func TestSignalBreakoutAndLargeMove(t *testing.T) {
	t.Parallel()
	closes := append(choppy(40), 100.75*1.04)
	got := signalsOf(bars("B", signalStart, closes...))
	if !slices.Equal(kinds(got), []string{KindBreakout20d, KindLargeMove}) {
		t.Fatalf("got %v", kinds(got))
	}
	// The prior 20-day high is 100.75 * 1.01; the score is 1 + the percent above it.
	hi := 100.75 * 1.01
	if want := 1 + (closes[40]/hi-1)*100; math.Abs(got[0].Score-want) > 1e-9 {
		t.Errorf("breakout score %v, want %v", got[0].Score, want)
	}
	if !strings.Contains(got[1].Detail, "+4.00%") || got[1].Score <= 1 {
		t.Errorf("large move %+v", got[1])
	}

	down := append(choppy(40), 99.25*0.96)
	got = signalsOf(bars("D", signalStart, down...))
	if !slices.Equal(kinds(got), []string{KindBreakdown20d, KindLargeMove}) {
		t.Fatalf("got %v", kinds(got))
	}
}

func TestSignalLargeMoveByFivePercentRule(t *testing.T) {
	t.Parallel()
	// A wild series (alternating +-6 %) where a 6 % day is ordinary by its own volatility but still above 5 %.
	closes := []float64{100}
	for i := 0; i < 40; i++ {
		closes = append(closes, closes[len(closes)-1]*[]float64{1.06, 1 / 1.06}[i%2])
	}
	s := bars("W", signalStart, closes...)
	var large []Signal
	for _, sig := range signalsOf(s) {
		if sig.Kind == KindLargeMove {
			large = append(large, sig)
		}
	}
	// The last day fell by 1 - 1/1.06 = 5.66 %, scored as its size over 5 %.
	if want := (1 - 1/1.06) * 100 / 5; len(large) != 1 || !strings.Contains(large[0].Detail, "beyond 5%") || math.Abs(large[0].Score-want) > 1e-9 {
		t.Errorf("got %+v", large)
	}
}

func TestSignalRSI(t *testing.T) {
	t.Parallel()
	up := []float64{100}
	for i := 0; i < 40; i++ {
		step := 1.01
		if i%5 == 4 {
			step = 0.997
		}
		up = append(up, up[len(up)-1]*step)
	}
	got := signalsOf(bars("U", signalStart, up...))
	if !slices.Contains(kinds(got), KindRSIOverbought) {
		t.Errorf("steady rise: %v", kinds(got))
	}
	down := make([]float64, len(up))
	for i, c := range up {
		down[i] = 10000 / c
	}
	got = signalsOf(bars("D", signalStart, down...))
	if !slices.Contains(kinds(got), KindRSIOversold) {
		t.Errorf("steady fall: %v", kinds(got))
	}
	for _, sig := range got {
		if sig.Kind == KindRSIOversold {
			rsi := Compute(bars("D", signalStart, down...), 0).RSI14.V
			if math.Abs(sig.Score-(1+(30-rsi)/10)) > 1e-9 || !strings.Contains(sig.Detail, "below 30") {
				t.Errorf("oversold %+v (RSI %v)", sig, rsi)
			}
		}
	}
}

// crossSeries falls for 250 bars and then climbs (or the mirror image), and returns the index of the bar
// on which SMA 50 crosses SMA 200, found independently of Signals.
func crossSeries(t *testing.T, golden bool) ([]float64, int) {
	t.Helper()
	var closes []float64
	for i := 0; i < 250; i++ {
		closes = append(closes, 200-0.4*float64(i))
	}
	for i := 0; i < 150; i++ {
		closes = append(closes, closes[len(closes)-1]+1.5)
	}
	if !golden {
		for i, c := range closes {
			closes[i] = 40000 / c
		}
	}
	fast, slow := SMA(closes, 50), SMA(closes, 200)
	for i := 250; i < len(closes); i++ {
		if (fast[i] > slow[i]) == golden && (fast[i-1] > slow[i-1]) != golden {
			return closes, i
		}
	}
	t.Fatal("no cross in the constructed series")
	return nil, 0
}

func TestSignalCrosses(t *testing.T) {
	t.Parallel()
	for _, golden := range []bool{true, false} {
		closes, at := crossSeries(t, golden)
		kind := KindGoldenCross
		if !golden {
			kind = KindDeathCross
		}
		for ago := 0; ago <= 7; ago++ {
			got := signalsOf(bars("C", signalStart, closes[:at+1+ago]...))
			var cross []Signal
			for _, s := range got {
				if s.Kind == KindGoldenCross || s.Kind == KindDeathCross {
					cross = append(cross, s)
				}
			}
			if ago >= 5 {
				if len(cross) != 0 {
					t.Errorf("%s %d bars ago still reported: %+v", kind, ago, cross)
				}
				continue
			}
			if len(cross) != 1 || cross[0].Kind != kind || math.Abs(cross[0].Score-(2-0.2*float64(ago))) > 1e-9 {
				t.Errorf("%s %d bars ago: got %+v", kind, ago, cross)
			}
		}
	}
}

func TestSignalsNeedHistory(t *testing.T) {
	t.Parallel()
	// Ten bars: no RSI, no averages, no 20-day range, no volatility. A 10 % jump is still a large move.
	closes := append(choppy(9), 110)
	got := signalsOf(bars("S", signalStart, closes...))
	if !slices.Equal(kinds(got), []string{KindLargeMove}) {
		t.Errorf("got %v", kinds(got))
	}
}

func TestRank(t *testing.T) {
	t.Parallel()
	in := []Signal{
		{Symbol: "A", Kind: "k1", Score: 1},
		{Symbol: "B", Kind: "k2", Score: 3},
		{Symbol: "C", Kind: "k3", Score: 2},
		{Symbol: "D", Kind: "k4", Score: 3},
	}
	orig := slices.Clone(in)
	got := Rank(in)
	var order []string
	for _, s := range got {
		order = append(order, s.Symbol)
	}
	if !slices.Equal(order, []string{"B", "D", "C", "A"}) {
		t.Errorf("order %v", order)
	}
	if !slices.Equal(in, orig) {
		t.Error("Rank changed its input")
	}
	if len(Rank(nil)) != 0 {
		t.Error("Rank(nil)")
	}
}

func TestPresets(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"us-megacaps", "sector-etfs", "crypto-majors", "semis"} {
		syms := Presets[name]
		if len(syms) < 5 {
			t.Errorf("%s: %d symbols", name, len(syms))
		}
		seen := map[string]bool{}
		for _, s := range syms {
			if n, err := NormalizeSymbol(s); err != nil || n != s {
				t.Errorf("%s: %q is not canonical (%q, %v)", name, s, n, err)
			}
			if seen[s] {
				t.Errorf("%s: %s twice", name, s)
			}
			seen[s] = true
		}
	}
}
