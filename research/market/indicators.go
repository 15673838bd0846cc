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

	// Per-symbol facts a reader needs to read the figures right; see Series.
	Class    AssetClass `json:"asset_class"`
	Currency string     `json:"currency,omitempty"`
	Exchange string     `json:"exchange,omitempty"`
	TimeZone string     `json:"time_zone,omitempty"`
	LastTime time.Time  `json:"last_time,omitzero"`
	// Decimals is the price precision (Series.Precision); DaysPerYear the calendar (AssetClass.DaysPerYear).
	Decimals    int  `json:"decimals"`
	DaysPerYear int  `json:"days_per_year"`
	Live        *Bar `json:"live,omitempty"`
	// Warnings are the series' data problems (suspect jumps) found by CheckJumps. A series with any is
	// Suspect: Signals raises nothing for it.
	Warnings []Warning `json:"warnings,omitempty"`

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
	// Volatility20 is the sample standard deviation of the last 20 daily log returns, annualised with the
	// class's DaysPerYear, in percent.
	Volatility20 Value `json:"volatility20"`
	// MaxDrawdown is the worst peak-to-trough fall of the close within the analysis window, in percent (<= 0):
	// the window's first bar is DrawdownFrom, the peak and the trough are dated.
	MaxDrawdown    Value     `json:"max_drawdown"`
	DrawdownFrom   time.Time `json:"drawdown_from,omitzero"`
	DrawdownPeak   time.Time `json:"drawdown_peak,omitzero"`
	DrawdownTrough time.Time `json:"drawdown_trough,omitzero"`
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
	// Returns are price-only (dividends left out), in percent: 1D over the previous bar; 1W, 1M and 3M by
	// calendar date, from the last close on or before AsOf minus 7 days, one month and three months (so "1W"
	// is a week of calendar time whatever the asset trades on); YTD from the last close of the previous
	// calendar year. Each From is the date of the close the return starts from.
	Return1D      Value     `json:"return_1d"`
	Return1W      Value     `json:"return_1w"`
	Return1M      Value     `json:"return_1m"`
	Return3M      Value     `json:"return_3m"`
	ReturnYTD     Value     `json:"return_ytd"`
	Return1DFrom  time.Time `json:"return_1d_from,omitzero"`
	Return1WFrom  time.Time `json:"return_1w_from,omitzero"`
	Return1MFrom  time.Time `json:"return_1m_from,omitzero"`
	Return3MFrom  time.Time `json:"return_3m_from,omitzero"`
	ReturnYTDFrom time.Time `json:"return_ytd_from,omitzero"`
}

// Suspect reports whether the series has a data problem that makes its figures unreliable (a jump that looks
// like an unadjusted split or a bad print).
func (ind Indicators) Suspect() bool { return len(ind.Warnings) > 0 }

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
		Class:     s.AssetClass(),
		Currency:  s.Currency,
		Exchange:  s.Exchange,
		TimeZone:  s.TimeZone,
		LastTime:  s.LastTime,
		Decimals:  s.Precision(),
		Live:      s.Live,
		Warnings:  CheckJumps(s),
	}
	ind.DaysPerYear = ind.Class.DaysPerYear()
	n := len(s.Bars)
	if n == 0 {
		return ind
	}
	c, h, l, v := s.Closes(), s.Highs(), s.Lows(), s.Volumes()
	ind.Close = c[n-1]

	ind.SMA20 = last(smaLast(c, 20, 1))
	ind.SMA50 = last(smaLast(c, 50, 1))
	ind.SMA200 = last(smaLast(c, 200, 1))
	ind.EMA12 = last(EMA(c, 12))
	ind.EMA26 = last(EMA(c, 26))
	line, sig, hist := MACD(c, 12, 26, 9)
	ind.MACD, ind.MACDSignal, ind.MACDHist = last(line), last(sig), last(hist)
	ind.RSI14 = last(RSI(c, 14))
	ind.ATR14 = last(ATR(h, l, c, 14))
	ind.Volatility20 = last(VolatilityPerYear(c[max(0, n-21):], 20, ind.DaysPerYear)) // the last 20 returns: the same figure

	from, ok := 0, true
	if window > 0 {
		from, ok = periodStart(s.Bars, ind.AsOf.Add(-window))
	}
	if ok {
		dd, peak, trough := drawdown(c[from:])
		ind.MaxDrawdown = Known(dd)
		ind.DrawdownFrom, ind.DrawdownPeak, ind.DrawdownTrough = s.Bars[from].Date, s.Bars[from+peak].Date, s.Bars[from+trough].Date
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
		// A last bar without volume (null from the provider) or with none (FX) has no ratio: 0.00x would
		// read as a day nobody traded.
		if sum > 0 && v[n-1] > 0 && !s.Bars[n-1].NoVolume {
			ind.VolumeVsAvg20 = Known(v[n-1] / (sum / 20))
		}
	}

	if n > 1 {
		ind.Return1D, ind.Return1DFrom = Known(Return(c, 1)), s.Bars[n-2].Date
	}
	ind.Return1W, ind.Return1WFrom = returnSince(s.Bars, ind.AsOf.AddDate(0, 0, -7))
	ind.Return1M, ind.Return1MFrom = returnSince(s.Bars, ind.AsOf.AddDate(0, -1, 0))
	ind.Return3M, ind.Return3MFrom = returnSince(s.Bars, ind.AsOf.AddDate(0, -3, 0))
	for i := n - 1; i >= 0; i-- {
		if s.Bars[i].Date.Year() < ind.AsOf.Year() {
			ind.ReturnYTD, ind.ReturnYTDFrom = Known(PercentChange(c[i], ind.Close)), s.Bars[i].Date
			break
		}
	}
	return ind
}

// returnSince is the percent change of the last close over the last close dated on or before start, and that
// close's date; not known when the series starts after start.
func returnSince(bars []Bar, start time.Time) (Value, time.Time) {
	n := len(bars)
	if n < 2 || bars[0].Date.After(start) {
		return Value{}, time.Time{}
	}
	i := n - 1
	for i > 0 && bars[i].Date.After(start) {
		i--
	}
	return Known(PercentChange(bars[i].Close, bars[n-1].Close)), bars[i].Date
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
