package market

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// yahooReply is one scripted answer of the fake chart API.
type yahooReply struct {
	status     int
	body       string
	retryAfter string
}

// yahooBundle is a fake Yahoo chart API plus a provider pointed at it. Replies are scripted per symbol and
// consumed in order; the last one repeats.
type yahooBundle struct {
	provider *Yahoo
	server   *httptest.Server

	mu       sync.Mutex
	replies  map[string][]yahooReply
	requests []*http.Request
	sleeps   []time.Duration
	now      time.Time
}

// The fake clock stands the day after the recorded AAPL range ends.
var yahooNow = time.Date(2020, 11, 7, 12, 0, 0, 0, time.UTC)

func setupYahoo(t *testing.T, opts ...YahooOption) *yahooBundle {
	t.Helper()
	b := &yahooBundle{replies: map[string][]yahooReply{}, now: yahooNow}
	b.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sym, ok := strings.CutPrefix(r.URL.Path, "/v8/finance/chart/")
		b.mu.Lock()
		b.requests = append(b.requests, r)
		rs := b.replies[sym]
		var rep yahooReply
		switch {
		case !ok:
			rep = yahooReply{status: http.StatusNotFound}
		case len(rs) == 0:
			rep = yahooReply{status: http.StatusNotFound, body: yahoo404}
		default:
			rep = rs[0]
			if len(rs) > 1 {
				b.replies[sym] = rs[1:]
			}
		}
		b.mu.Unlock()
		if rep.retryAfter != "" {
			w.Header().Set("Retry-After", rep.retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		w.Write([]byte(rep.body))
	}))
	t.Cleanup(b.server.Close)
	base := []YahooOption{
		WithBaseURL(b.server.URL),
		WithHTTPClient(b.server.Client()),
		WithClock(func() time.Time { b.mu.Lock(); defer b.mu.Unlock(); return b.now }),
		WithSleep(func(ctx context.Context, d time.Duration) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.sleeps = append(b.sleeps, d)
			return ctx.Err()
		}),
	}
	b.provider = NewYahoo(append(base, opts...)...)
	return b
}

func (b *yahooBundle) script(sym string, replies ...yahooReply) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.replies[sym] = replies
}

func (b *yahooBundle) requestCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.requests)
}

func (b *yahooBundle) advance(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.now = b.now.Add(d)
}

// yahoo404 is Yahoo's answer for a symbol it does not know.
const yahoo404 = `{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}`

func recorded(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/yahoo/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ok200(body string) yahooReply { return yahooReply{status: http.StatusOK, body: body} }

func TestYahooRecordedAAPL(t *testing.T) {
	t.Parallel()
	b := setupYahoo(t)
	b.script("AAPL", ok200(recorded(t, "chart-AAPL-2020-08-31-to-2020-11-07.json")))

	s, err := b.provider.History(context.Background(), "aapl", 70*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	if s.Symbol != "AAPL" || s.Source != "yahoo" || s.Synthetic || s.Currency != "USD" {
		t.Errorf("series header %+v", Series{Symbol: s.Symbol, Source: s.Source, Synthetic: s.Synthetic, Currency: s.Currency})
	}
	// The recording holds 49 sessions, 2020-08-31 to 2020-11-06, stamped at the New York open.
	if len(s.Bars) != 49 {
		t.Fatalf("%d bars, want 49", len(s.Bars))
	}
	first, last := s.Bars[0], s.Bars[48]
	if first.Date != time.Date(2020, 8, 31, 0, 0, 0, 0, time.UTC) || last.Date != time.Date(2020, 11, 6, 0, 0, 0, 0, time.UTC) {
		t.Errorf("dates %s .. %s", first.Date, last.Date)
	}
	if !s.AsOf().Equal(last.Date) {
		t.Errorf("AsOf %s", s.AsOf())
	}
	if first.Open != 127.58000183105469 || first.Close != 129.0399932861328 {
		t.Errorf("first bar %+v", first)
	}
	for i, bar := range s.Bars {
		if i > 0 && !bar.Date.After(s.Bars[i-1].Date) {
			t.Fatalf("bar %d not ascending", i)
		}
		if bar.Low > bar.High || bar.Close <= 0 || bar.Volume <= 0 {
			t.Errorf("bar %d implausible: %+v", i, bar)
		}
	}

	r := b.requests[0]
	q := r.URL.Query()
	if q.Get("interval") != "1d" || q.Get("period2") != "1604750400" || q.Get("period1") != "1598659200" {
		// period1 is UTC midnight of the day 70 days before the clock: 2020-08-29.
		t.Errorf("query %s", r.URL.RawQuery)
	}
	if ua := r.Header.Get("User-Agent"); !strings.Contains(ua, "Mozilla") {
		t.Errorf("User-Agent %q", ua)
	}
}

func TestYahooRecordedCryptoAndFX(t *testing.T) {
	t.Parallel()
	b := setupYahoo(t)
	b.script("BTC-USD", ok200(recorded(t, "chart-BTC-USD-2020-01-01-to-2020-01-03.json")))
	b.script("EURUSD=X", ok200(recorded(t, "chart-EURUSD=X-2020-01-01-to-2020-01-03.json")))

	btc, err := b.provider.History(context.Background(), "btc-usd", 5*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	if len(btc.Bars) != 3 || btc.Bars[0].Date != time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC) || btc.Bars[2].Close != 7344.88427734375 {
		t.Errorf("BTC-USD %+v", btc.Bars)
	}
	fx, err := b.provider.History(context.Background(), "EURUSD=X", 5*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	// FX has no volume: Yahoo sends zeros, which are kept as zeros.
	if len(fx.Bars) != 3 || fx.Bars[2].Date != time.Date(2020, 1, 3, 0, 0, 0, 0, time.UTC) || fx.Bars[0].Volume != 0 {
		t.Errorf("EURUSD=X %+v", fx.Bars)
	}
}

func TestYahooEscapesSymbolInPath(t *testing.T) {
	t.Parallel()
	b := setupYahoo(t)
	b.script("^GSPC", ok200(recorded(t, "chart-BTC-USD-2020-01-01-to-2020-01-03.json")))
	if _, err := b.provider.History(context.Background(), "^gspc", dayDur); err != nil {
		t.Fatal(err)
	}
	if p := b.requests[0].URL.EscapedPath(); p != "/v8/finance/chart/%5EGSPC" {
		t.Errorf("path %s", p)
	}
}

func TestYahooErrors(t *testing.T) {
	t.Parallel()
	aapl := func(t *testing.T) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(recorded(t, "chart-AAPL-2020-08-31-to-2020-11-07.json")), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	quote := func(m map[string]any) map[string]any {
		r := m["chart"].(map[string]any)["result"].([]any)[0].(map[string]any)
		return r["indicators"].(map[string]any)["quote"].([]any)[0].(map[string]any)
	}
	encode := func(t *testing.T, m map[string]any) string {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	shortClose := aapl(t)
	quote(shortClose)["close"] = quote(shortClose)["close"].([]any)[:10]

	for _, tc := range []struct {
		name    string
		replies []yahooReply
		want    error
		text    string
	}{
		{"unknown symbol", []yahooReply{{status: 404, body: yahoo404}}, ErrUnknownSymbol, "delisted"},
		{"not found inside a 200", []yahooReply{ok200(yahoo404)}, ErrUnknownSymbol, "delisted"},
		{"quotes without timestamps", []yahooReply{ok200(recorded(t, "chart-notimestamp-quotes-length.fake.json"))}, ErrMalformed, "quotes without timestamps"},
		{"empty range", []yahooReply{ok200(`{"chart":{"result":[{"meta":{"currency":"USD","symbol":"AAPL"},"indicators":{"quote":[{}],"adjclose":[{}]}}],"error":null}}`)}, ErrNoData, ""},
		{"not json", []yahooReply{ok200(`<html>oops</html>`)}, ErrMalformed, ""},
		{"no chart", []yahooReply{ok200(`{}`)}, ErrMalformed, "no chart"},
		{"no result no error", []yahooReply{ok200(`{"chart":{"result":[],"error":null}}`)}, ErrMalformed, ""},
		{"length mismatch", []yahooReply{ok200(encode(t, shortClose))}, ErrMalformed, "10 close values"},
		{"timestamps but no quotes", []yahooReply{ok200(`{"chart":{"result":[{"timestamp":[1577836800],"indicators":{"quote":[]}}],"error":null}}`)}, ErrMalformed, "no quotes"},
		{"all null", []yahooReply{ok200(`{"chart":{"result":[{"timestamp":[1577836800],"indicators":{"quote":[{"open":[null],"high":[null],"low":[null],"close":[null],"volume":[null]}]}}],"error":null}}`)}, ErrNoData, ""},
		{"rate limited", []yahooReply{{status: 429, body: "Too Many Requests"}}, ErrRateLimited, ""},
		{"server error", []yahooReply{{status: 502}}, ErrUnavailable, "HTTP 502"},
		{"bad request", []yahooReply{{status: 400, body: `{"chart":{"result":null,"error":{"code":"Bad Request","description":"Invalid input"}}}`}}, ErrUnavailable, "Invalid input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupYahoo(t)
			b.script("AAPL", tc.replies...)
			s, err := b.provider.History(context.Background(), "AAPL", 30*dayDur)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "AAPL") || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q should name the symbol and say %q", err, tc.text)
			}
			if len(s.Bars) != 0 {
				t.Errorf("bars returned with an error")
			}
		})
	}
}

func TestYahooSkipsNullBars(t *testing.T) {
	t.Parallel()
	var m map[string]any
	if err := json.Unmarshal([]byte(recorded(t, "chart-AAPL-2020-08-31-to-2020-11-07.json")), &m); err != nil {
		t.Fatal(err)
	}
	q := m["chart"].(map[string]any)["result"].([]any)[0].(map[string]any)["indicators"].(map[string]any)["quote"].([]any)[0].(map[string]any)
	for _, k := range []string{"open", "high", "low", "close", "volume"} {
		q[k].([]any)[3] = nil // a whole day without a trade
	}
	q["close"].([]any)[7] = nil  // a day with only the close missing
	q["volume"].([]any)[9] = nil // a day with prices but no volume: kept
	body, _ := json.Marshal(m)

	b := setupYahoo(t)
	b.script("AAPL", ok200(string(body)))
	s, err := b.provider.History(context.Background(), "AAPL", 70*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Bars) != 47 {
		t.Fatalf("%d bars, want 47", len(s.Bars))
	}
	for _, bar := range s.Bars {
		if d := bar.Date.Format(time.DateOnly); d == "2020-09-03" || d == "2020-09-10" {
			t.Errorf("null bar %s kept", d)
		}
	}
	if s.Bars[7].Date.Format(time.DateOnly) != "2020-09-14" || s.Bars[7].Volume != 0 {
		t.Errorf("bar without volume: %+v", s.Bars[7])
	}
}

func TestYahooRetries(t *testing.T) {
	t.Parallel()
	good := ok200(recorded(t, "chart-BTC-USD-2020-01-01-to-2020-01-03.json"))

	t.Run("recovers after 429 and 503", func(t *testing.T) {
		t.Parallel()
		b := setupYahoo(t)
		b.script("AAPL", yahooReply{status: 429}, yahooReply{status: 503}, good)
		if _, err := b.provider.History(context.Background(), "AAPL", dayDur); err != nil {
			t.Fatal(err)
		}
		if b.requestCount() != 3 || len(b.sleeps) != 2 || b.sleeps[0] != time.Second || b.sleeps[1] != 2*time.Second {
			t.Errorf("requests %d, sleeps %v", b.requestCount(), b.sleeps)
		}
	})
	t.Run("gives up after the bound", func(t *testing.T) {
		t.Parallel()
		b := setupYahoo(t, WithRetries(3, 100*time.Millisecond))
		b.script("AAPL", yahooReply{status: 429})
		_, err := b.provider.History(context.Background(), "AAPL", dayDur)
		if !errors.Is(err, ErrRateLimited) {
			t.Fatal(err)
		}
		if b.requestCount() != 4 || len(b.sleeps) != 3 || b.sleeps[2] != 400*time.Millisecond {
			t.Errorf("requests %d, sleeps %v", b.requestCount(), b.sleeps)
		}
	})
	t.Run("honours Retry-After", func(t *testing.T) {
		t.Parallel()
		b := setupYahoo(t)
		b.script("AAPL", yahooReply{status: 429, retryAfter: "7"}, good)
		if _, err := b.provider.History(context.Background(), "AAPL", dayDur); err != nil {
			t.Fatal(err)
		}
		if len(b.sleeps) != 1 || b.sleeps[0] != 7*time.Second {
			t.Errorf("sleeps %v", b.sleeps)
		}
	})
	t.Run("does not sit through a long Retry-After", func(t *testing.T) {
		t.Parallel()
		b := setupYahoo(t)
		b.script("AAPL", yahooReply{status: 429, retryAfter: "3600"}, good)
		if _, err := b.provider.History(context.Background(), "AAPL", dayDur); !errors.Is(err, ErrRateLimited) {
			t.Fatal(err)
		}
		if b.requestCount() != 1 || len(b.sleeps) != 0 {
			t.Errorf("requests %d, sleeps %v", b.requestCount(), b.sleeps)
		}
	})
	t.Run("does not retry what would not change", func(t *testing.T) {
		t.Parallel()
		b := setupYahoo(t)
		b.script("AAPL", yahooReply{status: 404, body: yahoo404}, good)
		if _, err := b.provider.History(context.Background(), "AAPL", dayDur); !errors.Is(err, ErrUnknownSymbol) {
			t.Fatal(err)
		}
		if b.requestCount() != 1 {
			t.Errorf("requests %d", b.requestCount())
		}
	})
	t.Run("stops when the context ends while waiting", func(t *testing.T) {
		t.Parallel()
		b := setupYahoo(t, WithSleep(func(ctx context.Context, d time.Duration) error { return context.Canceled }))
		b.script("AAPL", yahooReply{status: 503}, good)
		_, err := b.provider.History(context.Background(), "AAPL", dayDur)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
	})
}

func TestYahooAttemptTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	var sleeps int
	y := NewYahoo(WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithAttemptTimeout(20*time.Millisecond),
		WithRetries(1, time.Millisecond), WithSleep(func(context.Context, time.Duration) error { sleeps++; return nil }))
	_, err := y.History(context.Background(), "AAPL", dayDur)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if sleeps != 1 {
		t.Errorf("a timed-out attempt should be retried once, slept %d times", sleeps)
	}
}

func TestYahooNetworkError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	y := NewYahoo(WithBaseURL(url), WithRetries(0, 0))
	if _, err := y.History(context.Background(), "AAPL", dayDur); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestYahooCallerCancel(t *testing.T) {
	t.Parallel()
	b := setupYahoo(t)
	b.script("AAPL", yahooReply{status: 503})
	ctx, cancel := context.WithCancelCause(context.Background())
	paused := errors.New("run paused")
	cancel(paused)
	_, err := b.provider.History(ctx, "AAPL", dayDur)
	if !errors.Is(err, paused) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want the cancel cause and no provider blame", err)
	}
	if len(b.sleeps) != 0 {
		t.Errorf("slept %v after cancel", b.sleeps)
	}
}

func TestYahooInvalidSymbolMakesNoRequest(t *testing.T) {
	t.Parallel()
	b := setupYahoo(t)
	for _, sym := range []string{"", "../../etc/passwd", "AAPL?x=1", "AA PL"} {
		if _, err := b.provider.History(context.Background(), sym, dayDur); !errors.Is(err, ErrInvalidSymbol) {
			t.Errorf("%q: err = %v", sym, err)
		}
	}
	if _, err := b.provider.History(context.Background(), "AAPL", 0); err == nil {
		t.Error("zero lookback accepted")
	}
	if n := b.requestCount(); n != 0 {
		t.Errorf("%d requests", n)
	}
}

func TestYahooCache(t *testing.T) {
	t.Parallel()
	b := setupYahoo(t, WithCacheTTL(5*time.Minute))
	b.script("AAPL", ok200(recorded(t, "chart-AAPL-2020-08-31-to-2020-11-07.json")))
	ctx := context.Background()

	s1, err := b.provider.History(ctx, "AAPL", 70*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	s1.Bars[0].Close = -1 // a caller scribbling on its copy must not reach the cache
	s2, err := b.provider.History(ctx, "aapl", 70*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	if b.requestCount() != 1 {
		t.Fatalf("second call within TTL made a request (%d)", b.requestCount())
	}
	if s2.Bars[0].Close != 129.0399932861328 {
		t.Errorf("cache was changed through a returned series: %v", s2.Bars[0].Close)
	}
	// Another range is another key.
	if _, err := b.provider.History(ctx, "AAPL", 71*dayDur); err != nil {
		t.Fatal(err)
	}
	if b.requestCount() != 2 {
		t.Errorf("other range: %d requests", b.requestCount())
	}
	b.advance(5 * time.Minute)
	if _, err := b.provider.History(ctx, "AAPL", 70*dayDur); err != nil {
		t.Fatal(err)
	}
	if b.requestCount() != 3 {
		t.Errorf("expired entry reused: %d requests", b.requestCount())
	}

	// Failures are not cached.
	b.script("MSFT", yahooReply{status: 404, body: yahoo404}, ok200(recorded(t, "chart-AAPL-2020-08-31-to-2020-11-07.json")))
	if _, err := b.provider.History(ctx, "MSFT", dayDur); !errors.Is(err, ErrUnknownSymbol) {
		t.Fatal(err)
	}
	if _, err := b.provider.History(ctx, "MSFT", dayDur); err != nil {
		t.Fatalf("failure was cached: %v", err)
	}
}

func TestYahooCacheIsBounded(t *testing.T) {
	t.Parallel()
	b := setupYahoo(t)
	b.provider.maxEntries = 3
	body := recorded(t, "chart-BTC-USD-2020-01-01-to-2020-01-03.json")
	for _, sym := range []string{"A", "B", "C", "D", "E"} {
		b.script(sym, ok200(body))
		if _, err := b.provider.History(context.Background(), sym, dayDur); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(b.provider.cache); n != 3 {
		t.Errorf("cache holds %d entries, bound 3", n)
	}
}
