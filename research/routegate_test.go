package research_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

func TestRouteFactorAndAdmission(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	if f := research.ThrottledFactor(1); f != 0.5 {
		t.Fatalf("a 429 leaves %v of the limits, want 0.5", f)
	}
	if f := research.ThrottledFactor(0.12); f != 0.1 {
		t.Fatalf("a 429 at 0.12 leaves %v, want the floor 0.1", f)
	}
	for d, want := range map[time.Duration]float64{0: 0.5, 10 * time.Second: 0.6, 50 * time.Second: 1, time.Hour: 1} {
		if f := research.RouteFactor(0.5, at, at.Add(d)); f < want-1e-9 || f > want+1e-9 {
			t.Errorf("factor %s after a 429 = %v, want %v", d, f, want)
		}
	}
	now := at
	full := research.RouteLine{First: true, Factor: 1}
	for _, tc := range []struct {
		name   string
		lim    research.RouteLimits
		line   research.RouteLine
		tokens int64
		want   bool
	}{
		{"no limits", research.RouteLimits{}, full, 1, true},
		{"not first in line", research.RouteLimits{Concurrent: 5}, research.RouteLine{Ahead: 1, Factor: 1}, 1, false},
		{"paused by a 429", research.RouteLimits{Concurrent: 5}, research.RouteLine{First: true, Factor: 1, PausedUntil: now.Add(time.Second)}, 1, false},
		{"concurrency full", research.RouteLimits{Concurrent: 2}, research.RouteLine{First: true, Factor: 1, InFlight: 2}, 1, false},
		{"concurrency halved", research.RouteLimits{Concurrent: 4}, research.RouteLine{First: true, Factor: 0.5, InFlight: 2}, 1, false},
		{"concurrency room", research.RouteLimits{Concurrent: 4}, research.RouteLine{First: true, Factor: 0.5, InFlight: 1}, 1, true},
		{"minute full", research.RouteLimits{RequestsPerMinute: 60}, research.RouteLine{First: true, Factor: 1, Started: 60}, 1, false},
		{"spread over the minute", research.RouteLimits{RequestsPerMinute: 60}, research.RouteLine{First: true, Factor: 1, Started: 10, Started10: 10}, 1, false},
		{"room in the minute", research.RouteLimits{RequestsPerMinute: 60}, research.RouteLine{First: true, Factor: 1, Started: 30, Started10: 9}, 1, true},
		{"tokens full", research.RouteLimits{TokensPerMinute: 6000}, research.RouteLine{First: true, Factor: 1, Started: 1, Tokens: 5500, Started10: 0}, 1000, false},
		{"a call over the token limit goes alone", research.RouteLimits{TokensPerMinute: 600}, full, 5000, true},
	} {
		if got := research.Admits(tc.lim, tc.line, tc.tokens, now); got != tc.want {
			t.Errorf("%s: admits = %t, want %t", tc.name, got, tc.want)
		}
	}
	// 59 calls ahead at 60 a minute, the minute already spent: the 60 start
	// over the next minute; at concurrency 2 with calls of 4 s, 3 ahead and
	// 2 in flight wait for two calls' time.
	if w := research.RouteWait(research.RouteLimits{RequestsPerMinute: 60}, research.RouteLine{Ahead: 59, Started: 60, Factor: 1}, 1, now); w != time.Minute {
		t.Errorf("wait behind 59 at 60/min = %s, want 1m", w)
	}
	if w := research.RouteWait(research.RouteLimits{Concurrent: 2}, research.RouteLine{Ahead: 3, InFlight: 2, AvgCall: 4 * time.Second, Factor: 1}, 1, now); w != 8*time.Second {
		t.Errorf("wait at concurrency 2 = %s, want 8s", w)
	}
}

// limited is the bed's fake API as one route with limits.
func limited(lim llm.Limits) func(string) []llm.Route {
	return func(url string) []llm.Route {
		return []llm.Route{{ID: "api-a", Kind: billing.RouteOfficial, Model: "gpt-test", BaseURL: url, APIKey: "sk-test-aaaa1111",
			Price: billing.Price{InputPerM: billing.Micro, OutputPerM: 4 * billing.Micro}, Enabled: true, Limits: lim}}
	}
}

// queuedRuns counts the runs that were told they wait in line.
func queuedRuns(b *testbed.Bed, ids []string) (n int, note string) {
	for _, id := range ids {
		for _, ev := range b.Events.Of(id) {
			if ev.Queued != nil {
				n++
				note = ev.Note
				break
			}
		}
	}
	return n, note
}

// TestRouteLimitAcrossInstances: a route allowing 2 calls at once gets at
// most 2 from two engines sharing one PostgreSQL (and from one engine on
// SQLite, whose line is in its process): the others wait in line, are told
// where, and go as calls end; every run succeeds.
func TestRouteLimitAcrossInstances(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := testbed.New(t, testbed.Options{Postgres: pg, RoutesFor: limited(llm.Limits{Concurrent: 2})})
		engines := []*research.Engine{b.Engine}
		if pg {
			_, e2 := b.InstanceWithWorkers()
			engines = append(engines, e2)
		}
		gate := make(chan struct{})
		b.LLM.SetDefault(llmtest.Stream("a ", "b ").WithGate(gate))
		var ids []string
		for i := range 6 {
			who := billing.Identity{Platform: "telegram", ExternalID: fmt.Sprint(100 + i)}
			b.Fund(who, billing.BucketCredit, billing.Micro)
			e := engines[i%len(engines)]
			q, err := e.Quote(t.Context(), research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL"}, Depth: research.Quick, Model: "gpt-test", Owner: who})
			if err != nil {
				t.Fatal(err)
			}
			r, _, err := e.Confirm(t.Context(), q.ID, who, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID)
		}
		// Two calls stream (held by the gate); four wait in line.
		deadline := time.Now().Add(time.Minute)
		for n, _ := queuedRuns(b, ids); n < 4; n, _ = queuedRuns(b, ids) {
			if time.Now().After(deadline) {
				t.Fatalf("%d runs told they are queued, want 4; the fake has %d requests", n, len(b.LLM.Requests()))
			}
			time.Sleep(10 * time.Millisecond) // polling recorded events, not synchronising goroutines
		}
		if got := len(b.LLM.Requests()); got != 2 {
			t.Fatalf("%d requests reached the route while 4 runs waited in line, want 2", got)
		}
		if _, note := queuedRuns(b, ids); !strings.HasPrefix(note, "queued: ") || !strings.Contains(note, " ahead on this route, starts ") {
			t.Fatalf("queued note = %q", note)
		}
		close(gate)
		for _, id := range ids {
			if ev := b.Events.WaitFinal(t, id, time.Minute); ev.Run.State != research.Succeeded {
				t.Fatalf("run %s: %s %s", id, ev.Run.State, ev.Run.Error)
			}
		}
		if m := b.LLM.MaxActive(); m > 2 || len(b.LLM.Requests()) != 6 {
			t.Fatalf("the route saw %d calls at once (limit 2) and %d in all (want 6)", m, len(b.LLM.Requests()))
		}
		b.CheckSettled()
	})
}

// TestRouteThrottledBy429: a 429 with Retry-After on a limited route halves
// its admitted rate and holds every call back for the Retry-After: the retry
// reaches the route only after the pause; the run succeeds.
func TestRouteThrottledBy429(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := testbed.New(t, testbed.Options{Postgres: pg, RoutesFor: limited(llm.Limits{RequestsPerMinute: 600})})
		var mu sync.Mutex
		var arrivals []time.Time
		b.LLM.SetResponder(func(r llmtest.Request) (llmtest.Response, bool) {
			mu.Lock()
			defer mu.Unlock()
			arrivals = append(arrivals, time.Now())
			if r.Index == 0 {
				return llmtest.Error(429, "slow down").WithRetryAfter("1"), true
			}
			return llmtest.Stream("fine ", "now"), true
		})
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		r := confirm(t, b, quote(t, b, research.Request{Symbols: []string{"AAPL"}, Depth: research.Quick, Model: "gpt-test"}))
		if ev := b.Events.WaitFinal(t, r.ID, time.Minute); ev.Run.State != research.Succeeded || ev.Run.Failures != 1 {
			t.Fatalf("run: %s, %d failures, %s", ev.Run.State, ev.Run.Failures, ev.Run.Error)
		}
		line, err := b.Store.PeekRoute(t.Context(), "api-a", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(arrivals) != 2 {
			t.Fatalf("%d requests, want the 429 and its retry", len(arrivals))
		}
		// The pause runs from the 429's answer, after its arrival.
		if line.Factor >= 1 || line.Factor < 0.5 || line.PausedUntil.Before(arrivals[0].Add(time.Second)) {
			t.Fatalf("after a 429: factor %v, paused until %s (429 at %s)", line.Factor, line.PausedUntil, arrivals[0])
		}
		if arrivals[1].Before(line.PausedUntil) {
			t.Fatalf("the retry reached the route at %s, before the pause ended at %s", arrivals[1], line.PausedUntil)
		}
		b.CheckSettled()
	})
}

func TestCatalogRouteLimits(t *testing.T) {
	t.Parallel()
	cat, err := research.ParseCatalog([]byte(`{"routes": [{"id": "a", "kind": "official", "model": "m", "base_url": "https://x.test/v1",
		"input_per_m": "1", "output_per_m": "2", "enabled": true,
		"limits": {"concurrent": 50, "requests_per_minute": 500, "tokens_per_minute": 200000}}]}`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if l := cat.Route("a").Limits; l != (llm.Limits{Concurrent: 50, RequestsPerMinute: 500, TokensPerMinute: 200000}) || !l.Any() {
		t.Fatalf("limits = %+v", l)
	}
	if _, err := research.ParseCatalog([]byte(`{"routes": [{"id": "a", "kind": "official", "model": "m", "base_url": "https://x.test/v1",
		"input_per_m": "1", "output_per_m": "2", "limits": {"concurrent": -1}}]}`), func(string) string { return "" }); err == nil {
		t.Fatal("a negative limit was accepted")
	}
}

// TestQuoteIncludesRouteWait: a quote on a route allowing one call at once,
// with that call taken by a run streaming, says how long a call joining the
// line now would wait, and its runtime range is the idle route's range moved
// by that wait. The wait is what the line predicts (one average call: the
// 10 s assumed before any call ended); with the route idle again it is 0.
func TestQuoteIncludesRouteWait(t *testing.T) {
	t.Parallel()
	both(t, func(t *testing.T, pg bool) {
		b := testbed.New(t, testbed.Options{Postgres: pg, RoutesFor: limited(llm.Limits{Concurrent: 1})})
		gate := make(chan struct{})
		b.LLM.SetDefault(llmtest.Stream("a ", "b ").WithGate(gate))
		b.Fund(alice, billing.BucketCredit, billing.Micro)
		bob := billing.Identity{Platform: "telegram", ExternalID: "43"}
		b.Fund(bob, billing.BucketCredit, billing.Micro)
		req := research.Request{Symbols: []string{"AAPL"}, Depth: research.Quick, Model: "gpt-test"}
		idle := quote(t, b, req)
		if idle.QueueWait != 0 {
			t.Fatalf("an idle route's quote waits %s", idle.QueueWait)
		}
		busyReq := req
		busyReq.Owner = bob
		busy, _, err := b.Engine.Confirm(t.Context(), quote(t, b, busyReq).ID, bob, nil)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-b.LLM.Received(1):
		case <-time.After(time.Minute):
			t.Fatal("the busy run never called the route")
		}
		waiting := quote(t, b, req)
		if waiting.QueueWait != 10*time.Second {
			t.Fatalf("quote behind one call in flight waits %s, want 10s (one call of unknown length)", waiting.QueueWait)
		}
		if waiting.RuntimeLow != idle.RuntimeLow+waiting.QueueWait || waiting.RuntimeHigh != idle.RuntimeHigh+waiting.QueueWait {
			t.Fatalf("runtime %s-%s while queued, %s-%s idle: not moved by the %s wait",
				waiting.RuntimeLow, waiting.RuntimeHigh, idle.RuntimeLow, idle.RuntimeHigh, waiting.QueueWait)
		}
		close(gate)
		b.Events.WaitFinal(t, busy.ID, time.Minute)
		if after := quote(t, b, req); after.QueueWait != 0 {
			t.Fatalf("after the call ended the quote still waits %s", after.QueueWait)
		}
		b.CheckSettled()
	})
}
