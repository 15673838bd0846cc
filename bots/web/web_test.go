package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/web"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
)

func get(t *testing.T, url, accept string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
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
		TokensInSource: billing.UsageProvider, TokensOutSource: billing.UsageLocal, Held: 5000, Captured: 1234, Released: 3766, Status: "succeeded"})
	if err != nil {
		t.Fatal(err)
	}
	metrics := web.NewMetrics(llm.NewHealth(llm.HealthOptions{}))
	srv := httptest.NewServer(web.Handler(web.Deps{Receipts: b.Store, Metrics: metrics}))
	defer srv.Close()

	code, body, hdr := get(t, srv.URL+"/r/"+rc.PublicID, "")
	if code != 200 || !strings.Contains(body, "$0.001234") || !strings.Contains(body, "local") || strings.Contains(body, "<b>evil") ||
		!strings.Contains(body, "&lt;b&gt;evil") || !strings.Contains(body, "Not financial advice.") || strings.Contains(body, "0001-01-01") || hdr.Get("Cache-Control") != "private, no-store" {
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
	code, body, _ = get(t, srv.URL+"/metrics", "")
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
