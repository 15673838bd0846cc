package llm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// testBundle is what most tests need: a fake API, a client wired to it with
// an instant recording Sleep, and the failures and logs it produced.
type testBundle struct {
	fake   *llmtest.Server
	client *llm.Client
	logs   *lockedBuffer

	mu       sync.Mutex
	sleeps   []time.Duration
	failures []llm.Failure
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	tb := &testBundle{fake: llmtest.NewServer(t), logs: &lockedBuffer{}}
	tb.client = &llm.Client{
		Sleep: func(ctx context.Context, d time.Duration) error {
			tb.mu.Lock()
			tb.sleeps = append(tb.sleeps, d)
			tb.mu.Unlock()
			return ctx.Err()
		},
		OnFailure: func(f llm.Failure) {
			tb.mu.Lock()
			tb.failures = append(tb.failures, f)
			tb.mu.Unlock()
		},
		Log:         slog.New(slog.NewTextHandler(tb.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		IdleTimeout: 5 * time.Second, // generous: only the idle test relies on it firing
	}
	return tb
}

func (tb *testBundle) Sleeps() []time.Duration {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return slices.Clone(tb.sleeps)
}

func (tb *testBundle) Failures() []llm.Failure {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return slices.Clone(tb.failures)
}

// route returns an enabled route to the fake.
func route(id string, kind billing.RouteKind, fake *llmtest.Server) llm.Route {
	return llm.Route{
		ID: id, Kind: kind, Model: "model-" + id, BaseURL: fake.URL(),
		APIKey: "sk-test-" + id + "-0123456789abcd", KeyEnv: "KEY_" + strings.ToUpper(id),
		Price: billing.Price{InputPerM: 150_000, OutputPerM: 600_000}, MaxContext: 128_000, Enabled: true,
	}
}

var hello = llm.Request{
	Messages:  []llm.Message{{Role: llm.RoleSystem, Content: "You are terse."}, {Role: llm.RoleUser, Content: "Say hello."}},
	MaxTokens: 64,
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type delta struct {
	text string
	out  int64
}

func collect(deltas *[]delta) func(string, int64) {
	return func(s string, n int64) { *deltas = append(*deltas, delta{s, n}) }
}

func TestStreamProviderUsage(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.fake.Enqueue(llmtest.Stream("Hel", "lo", " there").WithUsage(21, 3))
	r := route("a", billing.RouteOfficial, tb.fake)

	var got []delta
	res, err := tb.client.Stream(context.Background(), []llm.Route{r}, hello, collect(&got))
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if res.Text != "Hello there" {
		t.Errorf("Text = %q, want %q", res.Text, "Hello there")
	}
	wantUsage := llm.Usage{PromptTokens: 21, CompletionTokens: 3, PromptSource: billing.UsageProvider, CompletionSource: billing.UsageProvider}
	if res.Usage != wantUsage {
		t.Errorf("Usage = %+v, want %+v", res.Usage, wantUsage)
	}
	// Local estimates while streaming: ceil(bytes/4) of the text so far.
	wantDeltas := []delta{{"Hel", 1}, {"lo", 2}, {" there", 3}}
	if !slices.Equal(got, wantDeltas) {
		t.Errorf("deltas = %v, want %v", got, wantDeltas)
	}
	if res.Attempts != 1 || len(res.Failures) != 0 || res.CrossBucket || res.Route.ID != "a" || res.FinishReason != "stop" {
		t.Errorf("Result = attempts %d, failures %v, cross %t, route %s, finish %q; want 1, none, false, a, stop",
			res.Attempts, res.Failures, res.CrossBucket, res.Route.ID, res.FinishReason)
	}
	if res.FirstToken <= 0 || res.Duration < res.FirstToken {
		t.Errorf("FirstToken %v, Duration %v: want 0 < FirstToken <= Duration", res.FirstToken, res.Duration)
	}

	reqs := tb.fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("fake saw %d requests, want 1", len(reqs))
	}
	q := reqs[0]
	if q.Path != "/v1/chat/completions" || q.Model != "model-a" || !q.Stream || !q.IncludeUsage() || q.MaxTokens != 64 {
		t.Errorf("request = path %s model %s stream %t include_usage %t max_tokens %d", q.Path, q.Model, q.Stream, q.IncludeUsage(), q.MaxTokens)
	}
	if !q.Authorization || q.BearerToken != r.APIKey {
		t.Errorf("request authorization present %t with the route's key %t", q.Authorization, q.BearerToken == r.APIKey)
	}
	wantMsgs := []llmtest.Message{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Say hello."}}
	if !reflect.DeepEqual(q.Messages, wantMsgs) {
		t.Errorf("messages = %+v, want %+v", q.Messages, wantMsgs)
	}
}

func TestStreamWithoutUsageCountsLocally(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.fake.Enqueue(llmtest.Stream("The answer ", "is 42.").WithoutUsage())

	res, err := tb.client.Stream(context.Background(), []llm.Route{route("a", billing.RouteRouted, tb.fake)}, hello, nil)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	want := llm.Usage{
		PromptTokens: llm.CountPromptTokens(hello.Messages), CompletionTokens: llm.CountTokens("The answer is 42."),
		PromptSource: billing.UsageLocal, CompletionSource: billing.UsageLocal,
	}
	if res.Usage != want {
		t.Errorf("Usage = %+v, want %+v", res.Usage, want)
	}
}

func TestStreamCancelMidStreamReturnsAtOnceAndClosesUpstream(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	gate := make(chan struct{})
	tb.fake.Enqueue(llmtest.Stream("first", " second", " third").WithGate(gate))
	r := route("a", billing.RouteOfficial, tb.fake)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	firstDelta := make(chan struct{}, 1)
	type outcome struct {
		res llm.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := tb.client.Stream(ctx, []llm.Route{r}, hello, func(string, int64) {
			select {
			case firstDelta <- struct{}{}:
			default:
			}
		})
		done <- outcome{res, err}
	}()

	gate <- struct{}{} // let exactly one chunk out
	select {
	case <-firstDelta:
	case <-time.After(5 * time.Second):
		t.Fatal("no delta within 5s")
	}
	userCancel := errors.New("user pressed cancel")
	start := time.Now()
	cancel(userCancel)
	var out outcome
	select {
	case out = <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Stream did not return within 2s of the cancel")
	}
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("Stream returned %v after the cancel, want < 200ms", took)
	}
	if !errors.Is(out.err, userCancel) {
		t.Errorf("err = %v, want one wrapping the cancel cause", out.err)
	}
	if out.res.Text != "first" || out.res.Route.ID != "a" {
		t.Errorf("partial Result text %q route %q, want %q from a", out.res.Text, out.res.Route.ID, "first")
	}
	wantUsage := llm.Usage{PromptTokens: llm.CountPromptTokens(hello.Messages), CompletionTokens: llm.CountTokens("first"),
		PromptSource: billing.UsageLocal, CompletionSource: billing.UsageLocal}
	if out.res.Usage != wantUsage {
		t.Errorf("Usage = %+v, want %+v", out.res.Usage, wantUsage)
	}
	if f := tb.Failures(); len(f) != 1 || f[0].Class != llm.ClassCanceled || f[0].DeliveredTokens != 2 || !errors.Is(f[0], userCancel) {
		t.Errorf("failures = %v, want one canceled with 2 delivered tokens, wrapping the cause", f)
	}

	select {
	case d := <-tb.fake.Disconnected():
		if d.Chunks != 1 {
			t.Errorf("fake wrote %d chunks before the disconnect, want 1", d.Chunks)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the fake never saw the client disconnect")
	}
	if n := tb.fake.ChunksWritten(); n != 1 {
		t.Errorf("ChunksWritten = %d, want 1", n)
	}
}

func TestStreamCancelDuringBackoff(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.fake.Enqueue(llmtest.Error(503, "busy"))
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stop := errors.New("shutting down")
	tb.client.Sleep = func(ctx context.Context, d time.Duration) error {
		cancel(stop) // the shutdown arrives while we wait
		<-ctx.Done()
		return context.Cause(ctx)
	}
	res, err := tb.client.Stream(ctx, []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, hello, nil)
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the cancel cause", err)
	}
	if res.Attempts != 1 || len(tb.fake.Requests()) != 1 {
		t.Errorf("attempts %d, requests %d; want 1 and 1", res.Attempts, len(tb.fake.Requests()))
	}
}

func TestStreamErrorEventIsRetried(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.fake.Enqueue(llmtest.StreamError("model overloaded", "part"), llmtest.Stream("whole answer"))

	var got []delta
	res, err := tb.client.Stream(context.Background(), []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, hello, collect(&got))
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if res.Text != "whole answer" || res.Attempts != 2 {
		t.Errorf("Text %q after %d attempts, want %q after 2", res.Text, res.Attempts, "whole answer")
	}
	f := tb.Failures()
	if len(f) != 1 || f[0].Class != llm.ClassStreamError || f[0].HTTPStatus != 200 || f[0].DeliveredTokens != 1 {
		t.Fatalf("failures = %v, want one stream_error with HTTP 200 and 1 delivered token", f)
	}
	if !strings.Contains(f[0].Err.Error(), "model overloaded") {
		t.Errorf("failure error %q does not carry the provider's message", f[0].Err)
	}
	// The retry starts over; the first attempt's text is not in the answer.
	if !slices.Equal(got, []delta{{"part", 1}, {"whole answer", 3}}) {
		t.Errorf("deltas = %v", got)
	}
}

func TestStreamHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, header string
		want         time.Duration
	}{
		{"seconds", "3", 3 * time.Second},
		{"http-date", now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
		{"date in the past", now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			tb.client.Now = func() time.Time { return now }
			tb.fake.Enqueue(llmtest.Error(429, "slow down").WithRetryAfter(tc.header), llmtest.Stream("ok"))

			res, err := tb.client.Stream(context.Background(), []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, hello, nil)
			if err != nil || res.Text != "ok" {
				t.Fatalf("Stream = %q, %v; want ok", res.Text, err)
			}
			if s := tb.Sleeps(); !slices.Equal(s, []time.Duration{tc.want}) {
				t.Errorf("slept %v, want [%v]", s, tc.want)
			}
			f := tb.Failures()
			if len(f) != 1 || f[0].Class != llm.ClassRateLimited || f[0].HTTPStatus != 429 || f[0].RetryAfter != tc.want {
				t.Errorf("failures = %+v, want one rate_limited 429 with RetryAfter %v", f, tc.want)
			}
		})
	}
}

func TestStreamRetryAfterTooLongMovesToNextRoute(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	other := llmtest.NewServer(t)
	tb.fake.Enqueue(llmtest.Error(429, "come back in two minutes").WithRetryAfter("120"))
	other.Enqueue(llmtest.Stream("from b"))

	res, err := tb.client.Stream(context.Background(),
		[]llm.Route{route("a", billing.RouteOfficial, tb.fake), route("b", billing.RouteOfficial, other)}, hello, nil)
	if err != nil || res.Text != "from b" || res.Route.ID != "b" {
		t.Fatalf("Stream = %q from %s, %v; want route b's answer", res.Text, res.Route.ID, err)
	}
	if s := tb.Sleeps(); len(s) != 0 {
		t.Errorf("slept %v, want no wait: 120s is over MaxRetryAfter", s)
	}
	if n := len(tb.fake.Requests()); n != 1 {
		t.Errorf("route a got %d requests, want 1", n)
	}
}

func TestStreamServerErrorsFallBackToNextRoute(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	b := llmtest.NewServer(t)
	tb.fake.SetDefault(llmtest.Error(503, "overloaded"))
	b.Enqueue(llmtest.Stream("from b"))
	routes := []llm.Route{route("a", billing.RouteOfficial, tb.fake), route("b", billing.RouteRouted, b)}
	tb.client.Health = llm.NewHealth(llm.HealthOptions{FailuresToCool: 10})

	res, err := tb.client.Stream(context.Background(), routes, hello, nil)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if res.Route.ID != "b" || res.Text != "from b" || !res.CrossBucket {
		t.Errorf("answer %q from %s cross-bucket %t, want from b across buckets", res.Text, res.Route.ID, res.CrossBucket)
	}
	if na, nb := len(tb.fake.Requests()), len(b.Requests()); na != 3 || nb != 1 {
		t.Errorf("requests a=%d b=%d, want 3 (first + 2 retries) and 1", na, nb)
	}
	if res.Attempts != 4 || len(res.Failures) != 3 {
		t.Errorf("attempts %d failures %d, want 4 and 3", res.Attempts, len(res.Failures))
	}
	for _, f := range res.Failures {
		if f.Route != "a" || f.Bucket != billing.BucketCredit || f.Class != llm.ClassServerError || f.HTTPStatus != 503 {
			t.Errorf("failure %+v, want a/credit server_error 503", f)
		}
	}
	// Exponential with equal jitter: [250ms, 500ms] then [500ms, 1s].
	s := tb.Sleeps()
	if len(s) != 2 || s[0] < 250*time.Millisecond || s[0] > 500*time.Millisecond || s[1] < 500*time.Millisecond || s[1] > time.Second {
		t.Errorf("backoffs %v, want 2 in [250ms,500ms] and [500ms,1s]", s)
	}
	if st := tb.client.Health.Stats("a"); st.Samples != 3 || st.SuccessRate != 0 || st.ConsecutiveFailures != 3 {
		t.Errorf("health of a = %+v, want 3 failed samples", st)
	}
	if st := tb.client.Health.Stats("b"); st.Samples != 1 || st.SuccessRate != 1 {
		t.Errorf("health of b = %+v, want 1 successful sample", st)
	}
}

func TestStreamClientErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	b := llmtest.NewServer(t)
	tb.fake.SetDefault(llmtest.Error(400, "context too long"))
	b.Enqueue(llmtest.Stream("from b"))
	tb.client.Health = llm.NewHealth(llm.HealthOptions{})

	res, err := tb.client.Stream(context.Background(),
		[]llm.Route{route("a", billing.RouteOfficial, tb.fake), route("b", billing.RouteOfficial, b)}, hello, nil)
	if err != nil || res.Route.ID != "b" {
		t.Fatalf("Stream from %s: %v; want b's answer", res.Route.ID, err)
	}
	if n := len(tb.fake.Requests()); n != 1 {
		t.Errorf("route a got %d requests, want 1 (a 400 is not retried)", n)
	}
	if s := tb.Sleeps(); len(s) != 0 {
		t.Errorf("slept %v before falling back, want no wait", s)
	}
	f := tb.Failures()
	if len(f) != 1 || f[0].Class != llm.ClassClient || f[0].HTTPStatus != 400 {
		t.Errorf("failures = %+v, want one client_error 400", f)
	}
	if st := tb.client.Health.Stats("a"); st.Samples != 0 {
		t.Errorf("a 400 blames the request, not the route, but health recorded %d samples", st.Samples)
	}
}

func TestStreamEndings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		first     llmtest.Response
		wantClass llm.ErrorClass // "" = the first response is a complete answer
		wantText  string
		delivered int64
	}{
		{"connection cut", llmtest.Broken("par", "tial"), llm.ClassBroken, "", 2},
		{"clean EOF without DONE", llmtest.Broken("par", "tial").WithCleanEOF(), llm.ClassBroken, "", 2},
		{"no chunks at all", llmtest.Broken().WithCleanEOF(), llm.ClassBroken, "", 0},
		{"DONE but no finish and no text", llmtest.Stream().WithoutFinish(), llm.ClassBroken, "", 0},
		{"DONE without finish_reason", llmtest.Stream("fine").WithoutFinish(), "", "fine", 0},
		{"finish_reason length", llmtest.Stream("trunc").WithFinish("length"), "", "trunc", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			tb.fake.Enqueue(tc.first, llmtest.Stream("retried"))
			res, err := tb.client.Stream(context.Background(), []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, hello, nil)
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			f := tb.Failures()
			if tc.wantClass == "" {
				if res.Text != tc.wantText || len(f) != 0 {
					t.Errorf("Text %q with failures %v, want %q at once", res.Text, f, tc.wantText)
				}
				return
			}
			if res.Text != "retried" || res.Attempts != 2 {
				t.Errorf("Text %q after %d attempts, want the retry's answer after 2", res.Text, res.Attempts)
			}
			if len(f) != 1 || f[0].Class != tc.wantClass || f[0].HTTPStatus != 200 || f[0].DeliveredTokens != tc.delivered {
				t.Errorf("failures = %+v, want one %s (HTTP 200, %d delivered)", f, tc.wantClass, tc.delivered)
			}
		})
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.client.IdleTimeout = 100 * time.Millisecond
	stuck := make(chan struct{}) // never released: the model stalls before its first chunk
	tb.fake.Enqueue(llmtest.Stream("never").WithGate(stuck), llmtest.Stream("ok"))

	res, err := tb.client.Stream(context.Background(), []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, hello, nil)
	if err != nil || res.Text != "ok" {
		t.Fatalf("Stream = %q, %v; want ok after a retry", res.Text, err)
	}
	if f := tb.Failures(); len(f) != 1 || f[0].Class != llm.ClassTimeout || f[0].HTTPStatus != 200 || !strings.Contains(f[0].Error(), "idle timeout") {
		t.Errorf("failures = %+v, want one idle timeout after the headers (HTTP 200)", f)
	}
	select {
	case <-tb.fake.Disconnected():
	case <-time.After(5 * time.Second):
		t.Error("the timed-out stream's connection was not closed")
	}
}

func TestStreamIdleTimeoutIsPerChunk(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	// Six chunks 100ms apart: 600ms in all, but never 300ms without a byte.
	tb.client.IdleTimeout = 300 * time.Millisecond
	tb.fake.Enqueue(llmtest.Stream("a", "b", "c", "d", "e", "f").WithDelay(100 * time.Millisecond))

	res, err := tb.client.Stream(context.Background(), []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, hello, nil)
	if err != nil || res.Text != "abcdef" || res.Attempts != 1 {
		t.Fatalf("Stream = %q after %d attempts, %v; want abcdef at once (failures %v)", res.Text, res.Attempts, err, res.Failures)
	}
}

func TestStreamReportsEveryFailure(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	b, c := llmtest.NewServer(t), llmtest.NewServer(t)
	tb.fake.Enqueue(
		llmtest.Error(429, "rate limited"),
		llmtest.HTML(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
		llmtest.Broken("x"),
	)
	b.Enqueue(llmtest.Error(401, "bad key"))
	c.Enqueue(llmtest.StreamError("oops"), llmtest.Stream("done"))
	routes := []llm.Route{route("a", billing.RouteOfficial, tb.fake), route("b", billing.RouteOfficial, b), route("c", billing.RouteRouted, c)}

	res, err := tb.client.Stream(context.Background(), routes, hello, nil)
	if err != nil || res.Text != "done" {
		t.Fatalf("Stream = %q, %v", res.Text, err)
	}
	type seen struct {
		route  string
		status int
		class  llm.ErrorClass
		bucket billing.Bucket
	}
	var got []seen
	for _, f := range tb.Failures() {
		got = append(got, seen{f.Route, f.HTTPStatus, f.Class, f.Bucket})
		if f.At.IsZero() || f.Err == nil {
			t.Errorf("failure %+v lacks a time or an error", f)
		}
	}
	want := []seen{
		{"a", 429, llm.ClassRateLimited, billing.BucketCredit},
		{"a", 502, llm.ClassServerError, billing.BucketCredit},
		{"a", 200, llm.ClassBroken, billing.BucketCredit},
		{"b", 401, llm.ClassClient, billing.BucketCredit},
		{"c", 200, llm.ClassStreamError, billing.BucketRouted},
	}
	if !slices.Equal(got, want) {
		t.Errorf("OnFailure saw\n%v\nwant\n%v", got, want)
	}
	if len(res.Failures) != len(want) || res.Attempts != 6 {
		t.Errorf("Result has %d failures and %d attempts, want %d and 6", len(res.Failures), res.Attempts, len(want))
	}
	var reqErr *openai.RequestError
	if !errors.As(res.Failures[1], &reqErr) || reqErr.HTTPStatusCode != 502 {
		t.Errorf("the HTML 502 failure does not unwrap to *openai.RequestError: %v", res.Failures[1].Err)
	}
}

func TestStreamAllRoutesFail(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	b := llmtest.NewServer(t)
	tb.fake.SetDefault(llmtest.Error(500, "down"))
	b.SetDefault(llmtest.HTML(502, "bad gateway"))

	res, err := tb.client.Stream(context.Background(),
		[]llm.Route{route("a", billing.RouteOfficial, tb.fake), route("b", billing.RouteRouted, b)}, hello, nil)
	if !errors.Is(err, llm.ErrAllRoutesFailed) {
		t.Fatalf("err = %v, want ErrAllRoutesFailed", err)
	}
	var last llm.Failure
	if !errors.As(err, &last) || last.Route != "b" || last.HTTPStatus != 502 {
		t.Errorf("err wraps failure %+v, want route b's 502", last)
	}
	if res.CrossBucket || res.Route.ID != "b" {
		t.Errorf("a failed call reports route %s, cross-bucket %t; want the last tried, b, and false", res.Route.ID, res.CrossBucket)
	}
	if res.Attempts != 6 || len(res.Failures) != 6 || len(tb.Failures()) != 6 || res.Text != "" {
		t.Errorf("attempts %d, failures %d (OnFailure %d), text %q; want 6, 6, 6, empty",
			res.Attempts, len(res.Failures), len(tb.Failures()), res.Text)
	}
}

func TestStreamNoEnabledRoute(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	r := route("a", billing.RouteOfficial, tb.fake)
	r.Enabled = false
	for _, routes := range [][]llm.Route{nil, {r}} {
		if _, err := tb.client.Stream(context.Background(), routes, hello, nil); !errors.Is(err, llm.ErrNoRoutes) {
			t.Errorf("Stream(%d routes) err = %v, want ErrNoRoutes", len(routes), err)
		}
	}
	if n := len(tb.fake.Requests()); n != 0 {
		t.Errorf("a disabled route got %d requests", n)
	}
}

func TestStreamSkipsCoolingRoute(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	b := llmtest.NewServer(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := llm.NewHealth(llm.HealthOptions{FailuresToCool: 1, Cooldown: time.Minute, Now: func() time.Time { return now }})
	tb.client.Health = h
	routes := []llm.Route{route("a", billing.RouteOfficial, tb.fake), route("b", billing.RouteOfficial, b)}

	h.Record("a", false, 0, 0, time.Second)
	res, err := tb.client.Stream(context.Background(), routes, hello, nil)
	if err != nil || res.Route.ID != "b" {
		t.Fatalf("Stream from %s: %v; want b", res.Route.ID, err)
	}
	if n := len(tb.fake.Requests()); n != 0 {
		t.Errorf("cooling route a got %d requests", n)
	}
	if !slices.Equal(res.Skipped, []string{"a"}) || res.CrossBucket {
		t.Errorf("Skipped = %v, CrossBucket %t; want [a], false", res.Skipped, res.CrossBucket)
	}

	// Every route cooling: they are all tried anyway, in order.
	h.Record("b", false, 0, 0, time.Second)
	res, err = tb.client.Stream(context.Background(), routes, hello, nil)
	if err != nil || res.Route.ID != "a" || len(res.Skipped) != 0 {
		t.Fatalf("Stream from %s (skipped %v): %v; want a, nothing skipped", res.Route.ID, res.Skipped, err)
	}
}

func TestStreamUsesMaxCompletionTokensForReasoningModels(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	r := route("a", billing.RouteOfficial, tb.fake)
	r.Model = "o3-mini"
	if _, err := tb.client.Stream(context.Background(), []llm.Route{r}, hello, nil); err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if q := tb.fake.Requests()[0]; q.MaxTokens != 0 || q.MaxCompletionTokens != 64 {
		t.Errorf("max_tokens %d, max_completion_tokens %d; want 0 and 64", q.MaxTokens, q.MaxCompletionTokens)
	}
}

func TestAPIKeyNeverLeaks(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	b, c := llmtest.NewServer(t), llmtest.NewServer(t)
	const key = "sk-proj-SuperSecretKeyMaterial9876wxyz"
	// Each failure quotes the key back, as providers and proxies do.
	tb.fake.SetDefault(llmtest.Error(401, "Incorrect API key provided: "+key+"."))
	b.SetDefault(llmtest.HTML(502, "<pre>Authorization: Bearer "+key+"</pre>"))
	c.SetDefault(llmtest.StreamError("upstream rejected "+key, "a"))
	var routes []llm.Route
	for _, r := range []llm.Route{route("a", billing.RouteOfficial, tb.fake), route("b", billing.RouteOfficial, b), route("c", billing.RouteRouted, c)} {
		r.APIKey = key
		routes = append(routes, r)
	}

	res, err := tb.client.Stream(context.Background(), routes, hello, nil)
	if !errors.Is(err, llm.ErrAllRoutesFailed) {
		t.Fatalf("err = %v, want ErrAllRoutesFailed", err)
	}
	texts := map[string]string{
		"error":      err.Error(),
		"result %v":  fmt.Sprintf("%v", res),
		"result %+v": fmt.Sprintf("%+v", res),
		"result %#v": fmt.Sprintf("%#v", res),
		"route %v":   fmt.Sprint(routes[0]),
		"log output": tb.logs.String(),
		"slog route": logged(func(l *slog.Logger) { l.Info("route", "route", routes[0]) }),
		"onfailure":  fmt.Sprint(tb.Failures()),
	}
	for _, f := range res.Failures {
		texts["failure "+string(f.Class)] += f.Error() + f.Err.Error()
	}
	// a's 401 is not retried, so failures are a, b, b, b, c, c, c.
	if len(res.Failures) != 7 {
		t.Fatalf("%d failures, want 7: %v", len(res.Failures), res.Failures)
	}
	var apiErr *openai.APIError
	if errors.As(res.Failures[0], &apiErr) {
		texts["401 message"] = apiErr.Message
	}
	var reqErr *openai.RequestError
	if errors.As(res.Failures[1], &reqErr) {
		texts["html body"] = string(reqErr.Body)
	}
	for what, s := range texts {
		if strings.Contains(s, key) || strings.Contains(s, "SuperSecret") {
			t.Errorf("%s reveals the API key:\n%s", what, s)
		}
	}
	// The failures are still informative, with the key masked.
	if !strings.Contains(texts["401 message"], "sk-...wxyz") || !strings.Contains(texts["html body"], "Bearer sk-...wxyz") {
		t.Errorf("masked messages lost their context: %q / %q", texts["401 message"], texts["html body"])
	}
	if !strings.Contains(tb.logs.String(), "class=client_error") {
		t.Errorf("the log did not record the failures at all:\n%s", tb.logs.String())
	}
}

func logged(f func(*slog.Logger)) string {
	var buf bytes.Buffer
	f(slog.New(slog.NewJSONHandler(&buf, nil)))
	return buf.String()
}
