package market

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Yahoo reads daily history from Yahoo Finance's keyless chart API (v8). It retries what is worth retrying
// (429, 5xx, network errors) a bounded number of times and keeps recent answers in a small in-memory cache,
// because a chat run asks for the same symbols again within minutes and the keyless API rate-limits eagerly.
//
// Prices are Yahoo's quote values (adjusted for splits, not for dividends); the adjclose series is not used,
// so that open, high, low and close stay on one basis.
type Yahoo struct {
	base       string
	client     *http.Client
	now        func() time.Time
	sleep      func(ctx context.Context, d time.Duration) error
	attempts   int
	backoff    time.Duration
	maxWait    time.Duration
	timeout    time.Duration
	ttl        time.Duration
	maxEntries int
	userAgent  string

	mu    sync.Mutex
	cache map[string]yahooEntry
}

// NewYahoo returns a Yahoo provider with the defaults documented on each option.
func NewYahoo(opts ...YahooOption) *Yahoo {
	y := &Yahoo{
		base:       "https://query1.finance.yahoo.com",
		client:     &http.Client{Timeout: 20 * time.Second},
		now:        time.Now,
		sleep:      sleepContext,
		attempts:   3,
		backoff:    time.Second,
		maxWait:    30 * time.Second,
		timeout:    10 * time.Second,
		ttl:        5 * time.Minute,
		maxEntries: 256,
		// Yahoo answers 429 to Go's default User-Agent far sooner than to a browser-like one.
		userAgent: "Mozilla/5.0 (compatible; forgebot market research)",
		cache:     make(map[string]yahooEntry),
	}
	for _, o := range opts {
		o(y)
	}
	// A nil from an option means "the default", not a panic on the first request.
	if y.client == nil {
		y.client = &http.Client{Timeout: 20 * time.Second}
	}
	if y.now == nil {
		y.now = time.Now
	}
	if y.sleep == nil {
		y.sleep = sleepContext
	}
	return y
}

var _ Provider = (*Yahoo)(nil)

type yahooEntry struct {
	series  Series
	expires time.Time
}

// YahooOption configures a Yahoo provider.
type YahooOption func(*Yahoo)

// WithBaseURL points the provider at another host (a test server, a proxy). Default
// https://query1.finance.yahoo.com.
func WithBaseURL(base string) YahooOption {
	return func(y *Yahoo) { y.base = strings.TrimRight(base, "/") }
}

// WithHTTPClient sets the HTTP client. Default: a client with a 20 s overall timeout.
func WithHTTPClient(c *http.Client) YahooOption { return func(y *Yahoo) { y.client = c } }

// WithClock sets the clock that decides "now" (the end of the requested range) and cache expiry.
func WithClock(now func() time.Time) YahooOption { return func(y *Yahoo) { y.now = now } }

// WithSleep replaces the wait between retries; it must return early with an error when ctx ends. Tests pass
// one that records the waits and returns at once.
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) YahooOption {
	return func(y *Yahoo) { y.sleep = sleep }
}

// WithRetries sets how many times a retryable failure is tried again (default 2, so 3 attempts) and the first
// backoff (default 1 s, doubling each time).
func WithRetries(retries int, backoff time.Duration) YahooOption {
	return func(y *Yahoo) { y.attempts, y.backoff = max(retries, 0)+1, backoff }
}

// WithAttemptTimeout bounds each HTTP attempt (default 10 s), independently of the caller's context.
func WithAttemptTimeout(d time.Duration) YahooOption { return func(y *Yahoo) { y.timeout = d } }

// WithCacheTTL sets how long a successful answer is reused (default 5 minutes; 0 disables the cache).
func WithCacheTTL(ttl time.Duration) YahooOption { return func(y *Yahoo) { y.ttl = ttl } }

// Name implements Provider.
func (y *Yahoo) Name() string { return "yahoo" }

// Synthetic implements Provider: Yahoo's data is real.
func (y *Yahoo) Synthetic() bool { return false }

// History implements Provider. The range asked for starts at UTC midnight of now-lookback, so bars from that
// trading day on are included.
func (y *Yahoo) History(ctx context.Context, symbol string, lookback time.Duration) (Series, error) {
	sym, err := NormalizeSymbol(symbol)
	if err != nil {
		return Series{}, fmt.Errorf("yahoo: %w", err)
	}
	if lookback <= 0 {
		return Series{}, fmt.Errorf("yahoo: %s: lookback must be positive, got %s", sym, lookback)
	}
	key := sym + "|" + strconv.FormatInt(int64(lookback), 10)
	now := y.now()
	if s, ok := y.cached(key, now); ok {
		return s, nil
	}

	period1 := day(now.UTC().Add(-lookback)).Unix()
	period2 := now.Unix()
	for attempt := 1; ; attempt++ {
		s, retryAfter, err := y.fetch(ctx, sym, period1, period2)
		if err == nil {
			y.store(key, s, now)
			return cloneSeries(s), nil
		}
		if ctx.Err() != nil {
			// The caller stopped the run; its cause (cancel, pause, shutdown) is the story, not the provider.
			return Series{}, fmt.Errorf("yahoo: %s: %w", sym, context.Cause(ctx))
		}
		// A negative retryAfter marks an answer that another try would not change.
		if attempt >= y.attempts || retryAfter < 0 {
			return Series{}, err
		}
		if retryAfter > y.maxWait {
			// The server asks for a longer pause than a chat run can sit through: say so now.
			return Series{}, err
		}
		wait := max(y.backoff<<(attempt-1), retryAfter)
		if serr := y.sleep(ctx, wait); serr != nil {
			return Series{}, fmt.Errorf("%w (stopped waiting to retry: %w)", err, serr)
		}
	}
}

// fetch makes one attempt. retryAfter is the server's Retry-After (0 if absent) for a retryable error, and
// negative for an error that must not be retried.
func (y *Yahoo) fetch(ctx context.Context, sym string, period1, period2 int64) (s Series, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, y.timeout)
	defer cancel()
	q := url.Values{}
	q.Set("interval", "1d")
	q.Set("period1", strconv.FormatInt(period1, 10))
	q.Set("period2", strconv.FormatInt(period2, 10))
	q.Set("events", "div,split")
	u := y.base + "/v8/finance/chart/" + url.PathEscape(sym) + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Series{}, -1, fmt.Errorf("yahoo: %s: %w: %w", sym, ErrUnavailable, err)
	}
	req.Header.Set("User-Agent", y.userAgent)
	req.Header.Set("Accept", "application/json")
	resp, err := y.client.Do(req)
	if err != nil {
		return Series{}, 0, fmt.Errorf("yahoo: %s: %w: %w", sym, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	const maxBody = 16 << 20
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return Series{}, 0, fmt.Errorf("yahoo: %s: %w: reading body: %w", sym, ErrUnavailable, err)
	}
	if len(body) > maxBody {
		return Series{}, -1, fmt.Errorf("yahoo: %s: %w: body larger than %d bytes", sym, ErrMalformed, maxBody)
	}

	switch {
	case resp.StatusCode == http.StatusOK:
		s, err := parseYahooChart(sym, body)
		return s, -1, err
	case resp.StatusCode == http.StatusNotFound:
		return Series{}, -1, fmt.Errorf("yahoo: %s: %w%s", sym, ErrUnknownSymbol, yahooDescription(body))
	case resp.StatusCode == http.StatusTooManyRequests:
		return Series{}, parseRetryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("yahoo: %s: %w (HTTP 429)", sym, ErrRateLimited)
	case resp.StatusCode >= 500:
		return Series{}, parseRetryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("yahoo: %s: %w: HTTP %d%s", sym, ErrUnavailable, resp.StatusCode, yahooDescription(body))
	default:
		return Series{}, -1, fmt.Errorf("yahoo: %s: %w: unexpected HTTP %d%s", sym, ErrUnavailable, resp.StatusCode, yahooDescription(body))
	}
}

// yahooChart is the part of the chart API's answer that we read. Prices are pointers because Yahoo writes
// null for a day it has a timestamp but no trade for.
type yahooChart struct {
	Chart *struct {
		Result []yahooResult `json:"result"`
		Error  *yahooError   `json:"error"`
	} `json:"chart"`
}

type yahooError struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}

type yahooResult struct {
	Meta struct {
		Symbol               string `json:"symbol"`
		Currency             string `json:"currency"`
		ExchangeTimezoneName string `json:"exchangeTimezoneName"`
		GMTOffset            int    `json:"gmtoffset"`
		ExchangeName         string `json:"exchangeName"`
		InstrumentType       string `json:"instrumentType"`
		PriceHint            int    `json:"priceHint"`
		RegularMarketTime    int64  `json:"regularMarketTime"`
		CurrentTradingPeriod struct {
			Regular struct {
				Start int64 `json:"start"`
				End   int64 `json:"end"`
			} `json:"regular"`
		} `json:"currentTradingPeriod"`
	} `json:"meta"`
	Timestamp []int64 `json:"timestamp"`
	Events    struct {
		Dividends map[string]struct {
			Amount float64 `json:"amount"`
			Date   int64   `json:"date"`
		} `json:"dividends"`
		Splits map[string]struct {
			Date        int64   `json:"date"`
			Numerator   float64 `json:"numerator"`
			Denominator float64 `json:"denominator"`
		} `json:"splits"`
	} `json:"events"`
	Indicators struct {
		Quote []struct {
			Open   []*float64 `json:"open"`
			High   []*float64 `json:"high"`
			Low    []*float64 `json:"low"`
			Close  []*float64 `json:"close"`
			Volume []*float64 `json:"volume"`
		} `json:"quote"`
	} `json:"indicators"`
}

// parseYahooChart turns a 200 answer into a Series, or says precisely why it cannot.
func parseYahooChart(sym string, body []byte) (Series, error) {
	var c yahooChart
	if err := json.Unmarshal(body, &c); err != nil {
		return Series{}, fmt.Errorf("yahoo: %s: %w: %w", sym, ErrMalformed, err)
	}
	if c.Chart == nil {
		return Series{}, fmt.Errorf("yahoo: %s: %w: no chart object", sym, ErrMalformed)
	}
	if e := c.Chart.Error; e != nil && e.Code != "" {
		if e.Code == "Not Found" {
			return Series{}, fmt.Errorf("yahoo: %s: %w: %s", sym, ErrUnknownSymbol, clip(e.Description))
		}
		return Series{}, fmt.Errorf("yahoo: %s: %w: %s: %s", sym, ErrUnavailable, clip(e.Code), clip(e.Description))
	}
	if len(c.Chart.Result) == 0 {
		return Series{}, fmt.Errorf("yahoo: %s: %w: no result and no error", sym, ErrMalformed)
	}
	r := c.Chart.Result[0]
	quotes := r.Indicators.Quote
	if len(r.Timestamp) == 0 {
		// An empty range comes back as a result with no timestamps and empty quote arrays; quotes without
		// timestamps cannot be dated and mean the answer is broken.
		for _, q := range quotes {
			if len(q.Open)+len(q.High)+len(q.Low)+len(q.Close)+len(q.Volume) > 0 {
				return Series{}, fmt.Errorf("yahoo: %s: %w: quotes without timestamps", sym, ErrMalformed)
			}
		}
		return Series{}, fmt.Errorf("yahoo: %s: %w", sym, ErrNoData)
	}
	if len(quotes) == 0 {
		return Series{}, fmt.Errorf("yahoo: %s: %w: %d timestamps but no quotes", sym, ErrMalformed, len(r.Timestamp))
	}
	q := quotes[0]
	n := len(r.Timestamp)
	for _, c := range []struct {
		name string
		col  []*float64
	}{{"open", q.Open}, {"high", q.High}, {"low", q.Low}, {"close", q.Close}} {
		if len(c.col) != n {
			return Series{}, fmt.Errorf("yahoo: %s: %w: %d timestamps but %d %s values", sym, ErrMalformed, n, len(c.col), c.name)
		}
	}
	if len(q.Volume) != 0 && len(q.Volume) != n {
		return Series{}, fmt.Errorf("yahoo: %s: %w: %d timestamps but %d volume values", sym, ErrMalformed, n, len(q.Volume))
	}

	loc := exchangeLocation(r.Meta.ExchangeTimezoneName, r.Meta.GMTOffset)
	bars := make([]Bar, 0, n)
	stamps := make([]int64, 0, n) // session opens of bars, for LastTime
	for i, ts := range r.Timestamp {
		if ts <= 0 {
			return Series{}, fmt.Errorf("yahoo: %s: %w: timestamp %d", sym, ErrMalformed, ts)
		}
		// A day Yahoo has a timestamp for but no trade comes as nulls; skip it rather than invent a price.
		if q.Open[i] == nil || q.High[i] == nil || q.Low[i] == nil || q.Close[i] == nil || *q.Close[i] <= 0 {
			continue
		}
		// Volume may be missing where prices are not (indices, FX); prices are what matter, so keep the bar.
		vol, noVol := 0.0, true
		if len(q.Volume) == n && q.Volume[i] != nil {
			vol, noVol = *q.Volume[i], false
		}
		b := Bar{
			Date: day(time.Unix(ts, 0).In(loc)),
			Open: *q.Open[i], High: *q.High[i], Low: *q.Low[i], Close: *q.Close[i], Volume: vol, NoVolume: noVol,
		}
		// Timestamps are session opens in the exchange's zone, so the local date is the trading day. During
		// the session Yahoo may add the live bar as a second entry for the same day; the later one wins.
		if k := len(bars); k > 0 && !b.Date.After(bars[k-1].Date) {
			if b.Date.Equal(bars[k-1].Date) {
				bars[k-1], stamps[k-1] = b, ts
				continue
			}
			return Series{}, fmt.Errorf("yahoo: %s: %w: timestamps out of order", sym, ErrMalformed)
		}
		bars = append(bars, b)
		stamps = append(stamps, ts)
	}
	if len(bars) == 0 {
		return Series{}, fmt.Errorf("yahoo: %s: %w: every bar in range is empty", sym, ErrNoData)
	}
	s := Series{
		Symbol: sym, Bars: bars, Source: "yahoo", Currency: r.Meta.Currency,
		Class: ClassOf(sym, r.Meta.InstrumentType), Exchange: r.Meta.ExchangeName, TimeZone: r.Meta.ExchangeTimezoneName,
		PriceHint: max(r.Meta.PriceHint, 0), LastTime: time.Unix(stamps[len(stamps)-1], 0).In(loc),
	}
	if s.TimeZone == "" && r.Meta.GMTOffset == 0 {
		s.TimeZone = "UTC"
	}
	// The last bar is live when the market's latest trade lies inside the current regular session and that
	// session is the last bar's day: Yahoo then sends the running day as a bar whose "close" is the last
	// trade. It is left out of Bars (and kept in Live) so that nothing treats it as a close.
	p := r.Meta.CurrentTradingPeriod.Regular
	if mt := r.Meta.RegularMarketTime; mt > 0 && p.End > p.Start && mt >= p.Start && mt < p.End &&
		day(time.Unix(mt, 0).In(loc)).Equal(bars[len(bars)-1].Date) {
		live := bars[len(bars)-1]
		live.Date = time.Unix(mt, 0).In(loc) // when the live "close" was the last trade
		s.Live, s.Bars = &live, bars[:len(bars)-1]
		if len(s.Bars) == 0 {
			return Series{}, fmt.Errorf("yahoo: %s: %w: only a live bar for a session not yet closed", sym, ErrNoData)
		}
		s.LastTime = time.Unix(stamps[len(s.Bars)-1], 0).In(loc)
	}
	for _, d := range r.Events.Dividends {
		if d.Date > 0 {
			s.Actions = append(s.Actions, Action{Date: day(time.Unix(d.Date, 0).In(loc)), Kind: "dividend", Amount: d.Amount})
		}
	}
	for _, sp := range r.Events.Splits {
		if sp.Date > 0 && sp.Numerator > 0 && sp.Denominator > 0 {
			s.Actions = append(s.Actions, Action{Date: day(time.Unix(sp.Date, 0).In(loc)), Kind: "split", Numerator: sp.Numerator, Denominator: sp.Denominator})
		}
	}
	slices.SortFunc(s.Actions, func(a, b Action) int {
		if c := a.Date.Compare(b.Date); c != 0 {
			return c
		}
		return strings.Compare(a.Kind, b.Kind)
	})
	return s, nil
}

// exchangeLocation prefers the named zone, which knows daylight saving; Yahoo's gmtoffset is the offset
// today, not on the bar's date, so it is only the fallback where the zone database is missing.
func exchangeLocation(name string, offset int) *time.Location {
	if name != "" {
		if loc, err := time.LoadLocation(name); err == nil {
			return loc
		}
	}
	return time.FixedZone("exchange", offset)
}

// yahooDescription extracts chart.error for an error message, as ": code: description", or "".
func yahooDescription(body []byte) string {
	var c yahooChart
	if json.Unmarshal(body, &c) != nil || c.Chart == nil || c.Chart.Error == nil {
		return ""
	}
	e := c.Chart.Error
	if e.Description != "" {
		return ": " + clip(e.Description)
	}
	return ": " + clip(e.Code)
}

// clip keeps text from a remote answer to a length that fits an error line.
func clip(s string) string {
	const n = 200
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// parseRetryAfter reads a Retry-After header given in seconds; the HTTP-date form is rare here and treated as
// absent.
func parseRetryAfter(v string) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || secs < 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

func (y *Yahoo) cached(key string, now time.Time) (Series, bool) {
	if y.ttl <= 0 {
		return Series{}, false
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	e, ok := y.cache[key]
	if !ok || !now.Before(e.expires) {
		return Series{}, false
	}
	return cloneSeries(e.series), true
}

func (y *Yahoo) store(key string, s Series, now time.Time) {
	if y.ttl <= 0 {
		return
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	if len(y.cache) >= y.maxEntries {
		for k, e := range y.cache {
			if !now.Before(e.expires) {
				delete(y.cache, k)
			}
		}
	}
	for len(y.cache) >= y.maxEntries {
		// Still full of live entries: drop the one closest to expiry.
		var oldest string
		for k, e := range y.cache {
			if oldest == "" || e.expires.Before(y.cache[oldest].expires) {
				oldest = k
			}
		}
		delete(y.cache, oldest)
	}
	y.cache[key] = yahooEntry{series: cloneSeries(s), expires: now.Add(y.ttl)}
}

// cloneSeries copies the bars so that a caller editing its series cannot change the cached one.
func cloneSeries(s Series) Series {
	s.Bars = slices.Clone(s.Bars)
	s.Actions = slices.Clone(s.Actions)
	if s.Live != nil {
		live := *s.Live
		s.Live = &live
	}
	return s
}

// sleepContext waits d or until ctx ends, whichever is first.
func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
