package market

import (
	"math"
	"strings"
	"time"
)

// AssetClass decides the calendar a series is read on: how many bars make a year (for annualising), how old
// its last bar may be before it is stale, and how big a one-day move must be to look like a data error.
type AssetClass string

// Asset classes. Indices, funds and futures trade on exchange days like equities and share their calendar.
const (
	Equity AssetClass = "equity"
	Crypto AssetClass = "crypto"
	FX     AssetClass = "fx"
)

// ClassOf names the asset class of a symbol, from the provider's instrument type when it gives one (Yahoo's
// "EQUITY", "ETF", "CRYPTOCURRENCY", "CURRENCY"...), else from the symbol's shape: "EURUSD=X" is FX,
// "BTC-USD" crypto, anything else an equity.
func ClassOf(symbol, instrumentType string) AssetClass {
	switch strings.ToUpper(instrumentType) {
	case "CRYPTOCURRENCY":
		return Crypto
	case "CURRENCY":
		return FX
	case "":
	default:
		return Equity
	}
	switch {
	case strings.HasSuffix(symbol, "=X"):
		return FX
	case isCryptoPair(symbol):
		return Crypto
	}
	return Equity
}

// DaysPerYear is the number of bars in a year on the class's calendar: 252 exchange days for equities, 365
// for crypto (which trades every day), 260 weekdays for FX (which trades around the clock on weekdays).
func (c AssetClass) DaysPerYear() int {
	switch c {
	case Crypto:
		return 365
	case FX:
		return 260
	}
	return TradingDaysPerYear
}

// StaleAfter is how old the last bar may be, in calendar time from its date to now, before the series is
// called stale: a long weekend (Friday's bar read on Tuesday) for exchange-traded and FX symbols, two days for
// crypto.
func (c AssetClass) StaleAfter() time.Duration {
	if c == Crypto {
		return 2 * 24 * time.Hour
	}
	return 5 * 24 * time.Hour
}

// jumpBound is the one-day close-to-close move, as a fraction, beyond which a bar is suspect: real moves that
// large are rare enough (a large cap's worst day is about -25 %, a major currency's about -10 %) that an
// unadjusted split or a bad print is the likelier story.
func (c AssetClass) jumpBound() float64 {
	switch c {
	case Crypto:
		return 0.40
	case FX:
		return 0.10
	}
	return 0.25
}

// Precision is the number of decimals prices of s are quoted with: the provider's own (Yahoo's priceHint)
// when it gave one, else inferred from the last close's size and the asset class (see InferPrecision).
func (s Series) Precision() int {
	if s.PriceHint > 0 {
		return s.PriceHint
	}
	if len(s.Bars) == 0 {
		return 2
	}
	return InferPrecision(s.Bars[len(s.Bars)-1].Close, s.AssetClass())
}

// InferPrecision guesses how many decimals a price is quoted with when the provider does not say: currency
// pairs to four decimals (three when the rate is 10 or more, as for yen pairs), other prices of 1 or more
// to cents, smaller ones with enough decimals to show three significant digits.
func InferPrecision(price float64, class AssetClass) int {
	price = math.Abs(price)
	switch {
	case class == FX && price >= 10:
		return 3
	case class == FX:
		return 4
	case price >= 1 || price == 0:
		return 2
	}
	return min(int(math.Ceil(-math.Log10(price)))+2, 8)
}
