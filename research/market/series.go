package market

import "time"

// Bar is one trading day. Date is UTC midnight of the trading day in the exchange's own calendar, so a bar
// compares and prints as a plain date whatever time zone the exchange is in.
type Bar struct {
	Date                           time.Time
	Open, High, Low, Close, Volume float64
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
