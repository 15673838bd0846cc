package web_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/web"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
)

func get(t *testing.T, url, accept string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body), res.Header
}

func TestReceiptPagesHealthAndMetrics(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{})
	acc := b.Fund(billing.Identity{Platform: "telegram", ExternalID: "1"}, billing.BucketRouted, billing.Micro)
	rc, err := b.Store.SaveReceipt(t.Context(), billing.Receipt{RunID: "r1", AccountID: acc, Model: "<b>evil</b>", Route: "cheap",
		RouteKind: billing.RouteRouted, Bucket: billing.BucketRouted, TokensIn: 1200, TokensOut: 340,
		TokensInSource: billing.UsageProvider, TokensOutSource: billing.UsageLocal, Held: 5000, Captured: 1234, Released: 3766, Status: "succeeded",
		Purchase: "research AAPL, NVDA (standard)"})
	if err != nil {
		t.Fatal(err)
	}
	metrics := web.NewMetrics(llm.NewHealth(llm.HealthOptions{}))
	const token = "metrics-token-0123456789"
	srv := httptest.NewServer(web.Handler(web.Deps{Receipts: b.Store, Metrics: metrics, MetricsToken: token}))
	defer srv.Close()

	code, body, hdr := get(t, srv.URL+"/r/"+rc.PublicID, "")
	if code != 200 || !strings.Contains(body, "$0.001234") || !strings.Contains(body, "local") || strings.Contains(body, "<b>evil") ||
		!strings.Contains(body, "&lt;b&gt;evil") || !strings.Contains(body, "<th>Bought</th><td>research AAPL, NVDA (standard)</td>") || !strings.Contains(body, "Not financial advice.") || strings.Contains(body, "0001-01-01") || hdr.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("receipt page: %d %s", code, body)
	}
	code, body, _ = get(t, srv.URL+"/r/"+rc.PublicID, "application/json")
	if code != 200 || !strings.Contains(body, `"captured_micros":1234`) || !strings.Contains(body, `"tokens_out_source":"local"`) {
		t.Fatalf("receipt json: %d %s", code, body)
	}
	_, unknown, _ := get(t, srv.URL+"/r/"+billing.NewPublicID(), "")
	for _, path := range []string{"/r/" + billing.NewPublicID(), "/r/short", "/r/" + strings.Repeat("a", 100), "/r/%27%20OR%201=1"} {
		code, body, _ := get(t, srv.URL+path, "")
		if code != 404 || body != unknown {
			t.Errorf("%s: %d %q; want the same plain 404 as any unknown token", path, code, body)
		}
	}
	if code, body, _ := get(t, srv.URL+"/healthz", ""); code != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
	metrics.Observe(nil).Publish(research.Event{Final: true, Run: research.Run{ID: "r1", State: research.Succeeded, Bucket: billing.BucketRouted, Captured: 1234, TokensIn: 10, TokensOut: 5}})
	metrics.Observe(nil).Publish(research.Event{Final: true, CancelLatency: 30 * time.Millisecond, Run: research.Run{ID: "r2", State: research.Cancelled, Bucket: billing.BucketRouted}})
	for _, auth := range []string{"", "Bearer wrong", "Basic " + token, "Bearer " + token + "x"} {
		if code, _, _ := get(t, srv.URL+"/metrics", "", "Authorization", auth); code != http.StatusUnauthorized {
			t.Errorf("metrics with Authorization %q: %d, want 401", auth, code)
		}
	}
	code, body, _ = get(t, srv.URL+"/metrics", "", "Authorization", "Bearer "+token)
	for _, want := range []string{`forgebot_runs_total{state="succeeded"} 1`, `forgebot_captured_micros_total{bucket="routed"} 1234`, `forgebot_tokens_total{direction="out"} 5`, `forgebot_cancel_latency_seconds_bucket{le="0.05"} 1`, `forgebot_runs_total{state="cancelled"} 1`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestMetricsBeforeFirstRun: the run, token, money and route series exist,
// at zero, before any run.
func TestMetricsBeforeFirstRun(t *testing.T) {
	t.Parallel()
	m := web.NewMetrics(llm.NewHealth(llm.HealthOptions{}))
	m.KnowRoutes("offline", "openai")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`forgebot_runs_total{state="succeeded"} 0`, `forgebot_runs_total{state="cancelled"} 0`,
		`forgebot_tokens_total{direction="in"} 0`, `forgebot_tokens_total{direction="out"} 0`, `forgebot_captured_micros_total{bucket="credit"} 0`,
		`forgebot_route_tokens_per_second{route="offline"} 0`, `forgebot_route_cooling{route="openai"} 0`, `forgebot_route_success_ratio{route="offline"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %s before the first run", want)
		}
	}
}

// down is a database that does not answer.
type down struct{ err error }

func (d down) Ping(context.Context) error { return d.err }

// TestHealthz: /healthz names the database and each chat adapter; an
// adapter that is not up degrades the answer but keeps 200 (the instance
// still serves), only a database that does not answer is a 503. No error
// text is shown.
func TestHealthz(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{NoWorkers: true})
	states := map[string]string{"telegram": "up", "discord": "up"}
	var mu sync.Mutex
	adapters := func() map[string]string { mu.Lock(); defer mu.Unlock(); return maps.Clone(states) }
	db := &switchable{p: b.Store.(web.Pinger)}
	srv := httptest.NewServer(web.Handler(web.Deps{Receipts: b.Store, DB: db, Adapters: adapters}))
	defer srv.Close()
	if code, body, _ := get(t, srv.URL+"/healthz", ""); code != 200 || body != "ok\ndatabase: up\ndiscord: up\ntelegram: up\n" {
		t.Fatalf("all up: %d %q", code, body)
	}
	mu.Lock()
	states["discord"] = "connecting: Discord unreachable, retrying"
	mu.Unlock()
	if code, body, _ := get(t, srv.URL+"/healthz", ""); code != 200 || !strings.HasPrefix(body, "degraded\n") || !strings.Contains(body, "discord: connecting") {
		t.Fatalf("discord down: %d %q", code, body)
	}
	db.set(down{errors.New("dial tcp 10.9.8.7:5432: connection refused")})
	code, body, _ := get(t, srv.URL+"/healthz", "")
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "down\ndatabase: down\n") || strings.Contains(body, "10.9.8.7") {
		t.Fatalf("database down: %d %q", code, body)
	}
}

type switchable struct {
	mu sync.Mutex
	p  web.Pinger
}

func (s *switchable) set(p web.Pinger) { s.mu.Lock(); s.p = p; s.mu.Unlock() }
func (s *switchable) Ping(ctx context.Context) error {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	return p.Ping(ctx)
}

// TestBodyLimitsAndTimeouts: a POST body over the limit is refused with
// 413, declared or not, and the server has read, write and idle timeouts.
func TestBodyLimitsAndTimeouts(t *testing.T) {
	t.Parallel()
	read := make(chan error, 4)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		read <- err
		if err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(web.LimitBodies(mux, 1024))
	defer srv.Close()
	post := func(body io.Reader, n int64) int {
		req, _ := http.NewRequest("POST", srv.URL+"/hook", body)
		req.ContentLength = n
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post(strings.NewReader(strings.Repeat("a", 1024)), 1024); code != http.StatusNoContent {
		t.Fatalf("a body at the limit: %d", code)
	}
	<-read
	if code := post(strings.NewReader(strings.Repeat("a", 4096)), 4096); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a declared body over the limit: %d", code)
	}
	// Chunked (no length): the read fails at the limit.
	if code := post(io.MultiReader(strings.NewReader(strings.Repeat("a", 4096))), -1); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a chunked body over the limit: %d", code)
	}
	if err := <-read; err == nil {
		t.Fatal("the handler read past the limit")
	}
	s := web.NewServer(mux)
	if s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 || s.ReadHeaderTimeout == 0 || s.MaxHeaderBytes == 0 {
		t.Fatalf("server lacks a timeout: %+v", s)
	}
}
