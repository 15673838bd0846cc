package market

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Provider is a source of daily price history.
type Provider interface {
	// Name is the Source the provider writes on its series ("yahoo", "csv", "demo").
	Name() string
	// Synthetic reports whether the provider makes up its data.
	Synthetic() bool
	// History returns daily bars covering at least lookback of calendar time ending at the provider's as-of
	// (now for yahoo and demo; the file's last bar for csv), for one symbol (normalised again, so a raw symbol
	// is accepted too). Errors wrap ErrInvalidSymbol, ErrUnknownSymbol, ErrNoData, ErrRateLimited,
	// ErrMalformed or ErrUnavailable, or the context's error.
	History(ctx context.Context, symbol string, lookback time.Duration) (Series, error)
}

// fetchConcurrency bounds FetchAll's parallel requests: enough to make a ten-symbol scan quick, few enough
// not to trip a keyless API's rate limit.
const fetchConcurrency = 4

// FetchAll fetches several symbols concurrently so that a multi-symbol run can report partial failures
// instead of failing whole. Successes are keyed by normalised symbol; failures by normalised symbol, or by the
// raw input when it is not a valid symbol. Duplicates (after normalisation) are fetched once. Every input ends
// up in exactly one of the two maps.
func FetchAll(ctx context.Context, p Provider, symbols []string, lookback time.Duration) (map[string]Series, map[string]error) {
	series := make(map[string]Series)
	errs := make(map[string]error)
	var todo []string
	seen := make(map[string]bool)
	for _, raw := range symbols {
		sym, err := NormalizeSymbol(raw)
		if err != nil {
			errs[raw] = fmt.Errorf("%s: %w", p.Name(), err)
			continue
		}
		if !seen[sym] {
			seen[sym] = true
			todo = append(todo, sym)
		}
	}

	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, fetchConcurrency)
	)
	for _, sym := range todo {
		wg.Go(func() {
			var (
				s   Series
				err error
			)
			select {
			case sem <- struct{}{}:
				s, err = p.History(ctx, sym, lookback)
				<-sem
			case <-ctx.Done():
				err = fmt.Errorf("%s: %s: %w", p.Name(), sym, context.Cause(ctx))
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[sym] = err
			} else {
				series[sym] = s
			}
		})
	}
	wg.Wait()
	return series, errs
}
