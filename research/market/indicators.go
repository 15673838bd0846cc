package market

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Value is one indicator reading. OK false means the series is too short for it (or, for a ratio, the
// denominator is zero); V is then meaningless and must not be shown as a number.
type Value struct {
	V  float64
	OK bool
}

// Known wraps a computed number, treating NaN and infinities (the building blocks' "not enough history")
// as not known.
func Known(v float64) Value {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Value{}
	}
	return Value{V: v, OK: true}
}

// String prints the value, or "n/a" when it is not known.
func (v Value) String() string {
	if !v.OK {
		return "n/a"
	}
	return strconv.FormatFloat(v.V, 'f', -1, 64)
}

// MarshalJSON writes the number, or null when the value is not known, so that a reader (or a model) given
// the JSON cannot mistake a missing indicator for a zero.
func (v Value) MarshalJSON() ([]byte, error) {
	if !v.OK {
		return []byte("null"), nil
	}
	return json.Marshal(v.V)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (v *Value) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*v = Value{}
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*v = Known(f)
	return nil
}

// Indicators are the facts about one series as of its last bar. Prices are in the series' currency;
// returns, distances, drawdown and volatility are in percent (1.5 means 1.5 %).
type Indicators struct {
	Symbol    string    `json:"symbol"`
	AsOf      time.Time `json:"as_of"`
	Source    string    `json:"source"`
	Synthetic bool      `json:"synthetic"`
	Bars      int       `json:"bars"`
	Close     float64   `json:"close"`

	SMA20  Value `json:"sma20"`
	SMA50  Value `json:"sma50"`
	SMA200 Value `json:"sma200"`
	// EMA12 and EMA26 are seeded with the SMA of their first 12 or 26 closes (see EMA).
	EMA12 Value `json:"ema12"`
	EMA26 Value `json:"ema26"`
	// MACD is EMA12 - EMA26; MACDSignal its 9-bar EMA; MACDHist their difference.
	MACD       Value `json:"macd"`
	MACDSignal Value `json:"macd_signal"`
	MACDHist   Value `json:"macd_hist"`
	// RSI14 and ATR14 use Wilder's smoothing.
	RSI14 Value `json:"rsi14"`
	ATR14 Value `json:"atr14"`
	// Volatility20 is the annualised sample standard deviation of the last 20 daily log returns, in percent.
	Volatility20 Value `json:"volatility20"`
	// MaxDrawdown is the worst peak-to-trough fall of the close within the analysis window, in percent (<= 0).
	MaxDrawdown Value `json:"max_drawdown"`
	// High52w and Low52w are the highest daily high and lowest daily low of the bars dated within one year
	// before AsOf (intraday extremes, as exchanges and Yahoo quote them). FromHigh52w (<= 0) and FromLow52w
	// (>= 0) are the distance of Close from them in percent.
	High52w     Value `json:"high52w"`
	Low52w      Value `json:"low52w"`
	FromHigh52w Value `json:"from_high52w"`
	FromLow52w  Value `json:"from_low52w"`
	// VolumeVsAvg20 is the last bar's volume over the mean volume of the 20 bars before it (the last bar is
	// left out so that a spike does not dilute its own yardstick). Not known where volume is zero (FX).
	VolumeVsAvg20 Value `json:"volume_vs_avg20"`
	// Returns in percent over 1, 5, 21 and 63 bars, and since the last close of the previous calendar year.
	Return1D  Value `json:"return_1d"`
	Return1W  Value `json:"return_1w"`
	Return1M  Value `json:"return_1m"`
	Return3M  Value `json:"return_3m"`
	ReturnYTD Value `json:"return_ytd"`
}

// coverSlack is how far after a period's start the first bar may be and still count as covering it: a
// period that starts on a Saturday before a Monday holiday has its first bar three days later.
const coverSlack = 4 * 24 * time.Hour

// Compute reads the indicators of s as of its last bar. All of s's history feeds the moving averages and
// oscillators (fetch extra lookback so SMA 200 exists); window is the analysis window for MaxDrawdown: the
// bars dated after AsOf-window (all bars when window <= 0). A figure whose period reaches before the first bar
// (a 52-week high from eight months of data, a drawdown over a window the series does not cover) is not
// known rather than quietly computed from less.
func Compute(s Series, window time.Duration) Indicators {
	ind := Indicators{
		Symbol:    s.Symbol,
		AsOf:      s.AsOf(),
		Source:    s.Source,
		Synthetic: s.Synthetic,
		Bars:      len(s.Bars),
	}
	n := len(s.Bars)
	if n == 0 {
		return ind
	}
	c, h, l, v := s.Closes(), s.Highs(), s.Lows(), s.Volumes()
	ind.Close = c[n-1]

	ind.SMA20 = last(SMA(c, 20))
	ind.SMA50 = last(SMA(c, 50))
	ind.SMA200 = last(SMA(c, 200))
	ind.EMA12 = last(EMA(c, 12))
	ind.EMA26 = last(EMA(c, 26))
	line, sig, hist := MACD(c, 12, 26, 9)
	ind.MACD, ind.MACDSignal, ind.MACDHist = last(line), last(sig), last(hist)
	ind.RSI14 = last(RSI(c, 14))
	ind.ATR14 = last(ATR(h, l, c, 14))
	ind.Volatility20 = last(Volatility(c, 20))

	if window <= 0 {
		ind.MaxDrawdown = Known(MaxDrawdown(c))
	} else if i, ok := periodStart(s.Bars, ind.AsOf.Add(-window)); ok {
		ind.MaxDrawdown = Known(MaxDrawdown(c[i:]))
	}

	if i, ok := periodStart(s.Bars, ind.AsOf.AddDate(-1, 0, 0)); ok {
		hi, lo := h[i], l[i]
		for j := i; j < n; j++ {
			hi, lo = math.Max(hi, h[j]), math.Min(lo, l[j])
		}
		ind.High52w, ind.Low52w = Known(hi), Known(lo)
		ind.FromHigh52w, ind.FromLow52w = Known(PercentChange(hi, ind.Close)), Known(PercentChange(lo, ind.Close))
	}

	if n > 20 {
		sum := 0.0
		for _, x := range v[n-21 : n-1] {
			sum += x
		}
		if sum > 0 {
			ind.VolumeVsAvg20 = Known(v[n-1] / (sum / 20))
		}
	}

	ind.Return1D = Known(Return(c, 1))
	ind.Return1W = Known(Return(c, 5))
	ind.Return1M = Known(Return(c, 21))
	ind.Return3M = Known(Return(c, 63))
	for i := n - 1; i >= 0; i-- {
		if s.Bars[i].Date.Year() < ind.AsOf.Year() {
			ind.ReturnYTD = Known(PercentChange(c[i], ind.Close))
			break
		}
	}
	return ind
}

// periodStart returns the index of the first bar dated after start, and whether the series reaches back far
// enough for the period to be covered (see coverSlack).
func periodStart(bars []Bar, start time.Time) (int, bool) {
	if len(bars) == 0 || bars[0].Date.After(start.Add(coverSlack)) {
		return 0, false
	}
	i := 0
	for i < len(bars) && !bars[i].Date.After(start) {
		i++
	}
	return i, i < len(bars)
}

func last(xs []float64) Value {
	if len(xs) == 0 {
		return Value{}
	}
	return Known(xs[len(xs)-1])
}
