package market

import "errors"

// Sentinel errors. Providers wrap them with the provider name and the symbol
// ("yahoo: AAPL: rate limited"), so callers match with errors.Is and still have the whole story to log.
var (
	// ErrInvalidSymbol: the symbol is empty, too long, or has characters or a shape no market symbol has.
	ErrInvalidSymbol = errors.New("invalid symbol")
	// ErrUnknownSymbol: the provider has no instrument by that symbol (Yahoo's 404, a missing CSV file).
	ErrUnknownSymbol = errors.New("unknown symbol")
	// ErrRateLimited: the provider refused because of request volume (HTTP 429), after the allowed retries.
	ErrRateLimited = errors.New("rate limited")
	// ErrNoData: the symbol exists but the provider has no bars in the asked range.
	ErrNoData = errors.New("no data in range")
	// ErrMalformed: the provider's answer or the file cannot be read as price history.
	ErrMalformed = errors.New("malformed market data")
	// ErrUnavailable: the provider could not be reached or failed (network error, timeout, HTTP 5xx after the
	// allowed retries, an unexpected status).
	ErrUnavailable = errors.New("provider unavailable")
)
