package market

import "time"

// Bar is one trading day. Date is UTC midnight of the trading day in the exchange's own calendar, so a bar
// compares and prints as a plain date whatever time zone the exchange is in.
type Bar struct {
	Date                           time.Time
	Open, High, Low, Close, Volume float64
	// NoVolume marks a bar whose volume the provider left out (Yahoo's null), so that it is not read as a
	// day on which nothing traded.
	NoVolume bool
}

// Action is a corporate action the provider reported: a dividend or a split.
type Action struct {
	// Date is the ex-date, as a plain date like Bar.Date.
	Date time.Time
	// Kind is "dividend" or "split".
	Kind string
	// Amount is a dividend's cash amount per share, in the series' currency.
	Amount float64
	// Numerator and Denominator are a split's ratio: 4 and 1 for a 4-for-1 split.
	Numerator, Denominator float64
}

// Ratio is a split's numerator over its denominator (4 for 4:1), or 0 for a dividend.
func (a Action) Ratio() float64 {
	if a.Kind != "split" || a.Denominator == 0 {
		return 0
	}
	return a.Numerator / a.Denominator
}

// Series is the daily history of one symbol as one provider gave it.
type Series struct {
	Symbol string
	// Bars are ascending by Date, one per trading day.
	Bars []Bar
	// Source names the provider: "yahoo", "csv" or "demo".
	Source string
	// Synthetic is true for generated data; whoever shows the series must say so.
	Synthetic bool
	// Currency is the ISO code of the prices when the provider says it, else empty.
	Currency string

	// Class is the asset class, which picks the calendar (see AssetClass). Empty reads as Equity.
	Class AssetClass
	// Exchange is the provider's name for the venue ("NMS", "CCC"), else empty.
	Exchange string
	// TimeZone is the exchange's IANA zone ("America/New_York") when the provider gives it, else empty: the
	// bars are then plain dates whose zone is unknown.
	TimeZone string
	// PriceHint is the number of decimals the provider quotes prices with (Yahoo's priceHint), 0 when not
	// given; Precision falls back to inferring it.
	PriceHint int
	// LastTime is when the last bar's session opened, in the exchange's zone, when the provider timestamps
	// bars; zero for date-only sources (CSV).
	LastTime time.Time
	// Live is the in-session bar the provider sent for a session not yet closed (its Date is the time of the
	// last trade it holds, in the exchange zone, not a plain date). It is kept out of Bars, so
	// that no figure or signal reads an unfinished day as a close; reports say it was left out.
	Live *Bar
	// Actions are the dividends and splits the provider reported within the range, oldest first.
	Actions []Action
}

// AssetClass returns s.Class, or Equity when it is not set.
func (s Series) AssetClass() AssetClass {
	if s.Class == "" {
		return Equity
	}
	return s.Class
}

// AsOf is the date of the last bar, or the zero time for an empty series.
func (s Series) AsOf() time.Time {
	if len(s.Bars) == 0 {
		return time.Time{}
	}
	return s.Bars[len(s.Bars)-1].Date
}

// Closes returns the closing prices in bar order, ready for the indicator functions.
func (s Series) Closes() []float64 { return s.column(func(b Bar) float64 { return b.Close }) }

// Highs returns the daily highs in bar order.
func (s Series) Highs() []float64 { return s.column(func(b Bar) float64 { return b.High }) }

// Lows returns the daily lows in bar order.
func (s Series) Lows() []float64 { return s.column(func(b Bar) float64 { return b.Low }) }

// Volumes returns the daily volumes in bar order.
func (s Series) Volumes() []float64 { return s.column(func(b Bar) float64 { return b.Volume }) }

func (s Series) column(f func(Bar) float64) []float64 {
	out := make([]float64, len(s.Bars))
	for i, b := range s.Bars {
		out[i] = f(b)
	}
	return out
}

// day returns UTC midnight of t's calendar date in t's own location.
func day(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
