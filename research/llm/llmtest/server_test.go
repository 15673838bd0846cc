package llmtest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// post sends a chat request straight over HTTP, so these tests check the
// wire format without the client under test.
func post(t *testing.T, ctx context.Context, s *llmtest.Server, includeUsage bool) *http.Response {
	t.Helper()
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true`
	if includeUsage {
		body += `,"stream_options":{"include_usage":true}`
	}
	body += `}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer k")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// events reads the SSE data payloads until the body ends.
func events(t *testing.T, r io.Reader) ([]string, error) {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, data)
		}
	}
	return out, sc.Err()
}

func TestStreamHonoursIncludeUsage(t *testing.T) {
	t.Parallel()
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Stream("a", "b"), llmtest.Stream("a", "b"))

	for _, include := range []bool{false, true} {
		evs, err := events(t, post(t, context.Background(), s, include).Body)
		if err != nil {
			t.Fatal(err)
		}
		// a, b, finish, [usage], [DONE]
		wantN := 4
		if include {
			wantN = 5
		}
		if len(evs) != wantN || evs[len(evs)-1] != "[DONE]" {
			t.Fatalf("include_usage=%t: events %q", include, evs)
		}
		var usage struct {
			Choices []any          `json:"choices"`
			Usage   *llmtest.Usage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(evs[len(evs)-2]), &usage); err != nil {
			t.Fatal(err)
		}
		if include != (usage.Usage != nil) {
			t.Errorf("include_usage=%t but usage chunk present=%t", include, usage.Usage != nil)
		}
		if include && *usage.Usage != llmtest.DefaultUsage(1, 2) {
			t.Errorf("usage %+v, want the default %+v", *usage.Usage, llmtest.DefaultUsage(1, 2))
		}
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].IncludeUsage() || !reqs[1].IncludeUsage() || reqs[1].MaxTokens != 5 ||
		reqs[1].BearerToken != "k" || !reqs[1].Authorization || reqs[1].Messages[0].Content != "hi" || reqs[1].Index != 1 {
		t.Errorf("recorded requests %+v", reqs)
	}
}

func TestErrorResponses(t *testing.T) {
	t.Parallel()
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Error(429, "slow down").WithRetryAfter("7"), llmtest.HTML(502, "<h1>Bad Gateway</h1>"))
	s.SetDefault(llmtest.Error(500, "default"))

	r1 := post(t, context.Background(), s, true)
	b1, _ := io.ReadAll(r1.Body)
	if r1.StatusCode != 429 || r1.Header.Get("Retry-After") != "7" || !strings.Contains(string(b1), `"message":"slow down"`) ||
		r1.Header.Get("Content-Type") != "application/json" {
		t.Errorf("429: status %d retry-after %q body %s", r1.StatusCode, r1.Header.Get("Retry-After"), b1)
	}
	r2 := post(t, context.Background(), s, true)
	b2, _ := io.ReadAll(r2.Body)
	if r2.StatusCode != 502 || string(b2) != "<h1>Bad Gateway</h1>" || !strings.HasPrefix(r2.Header.Get("Content-Type"), "text/html") {
		t.Errorf("502: status %d body %s", r2.StatusCode, b2)
	}
	if r3 := post(t, context.Background(), s, true); r3.StatusCode != 500 {
		t.Errorf("empty queue: status %d, want the default's 500", r3.StatusCode)
	}
	if s.Pending() != 0 {
		t.Errorf("Pending = %d, want 0", s.Pending())
	}
}

func TestBrokenAndErroringStreams(t *testing.T) {
	t.Parallel()
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Broken("x", "y"), llmtest.StreamError("boom", "x"))

	evs, err := events(t, post(t, context.Background(), s, true).Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(evs) != 2 {
		t.Errorf("broken stream: %d events, err %v; want 2 and an unexpected EOF", len(evs), err)
	}
	evs, err = events(t, post(t, context.Background(), s, true).Body)
	if err != nil || len(evs) != 2 || !strings.HasPrefix(evs[1], `{"error":`) || !strings.Contains(evs[1], "boom") {
		t.Errorf("erroring stream: events %q, err %v", evs, err)
	}
	if n := s.ChunksWritten(); n != 3 {
		t.Errorf("ChunksWritten = %d, want 3", n)
	}
}

func TestGateAndDisconnect(t *testing.T) {
	t.Parallel()
	s := llmtest.NewServer(t)
	gate := make(chan struct{})
	s.Enqueue(llmtest.Stream("one", "two").WithGate(gate))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := post(t, ctx, s, true)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() != "" {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	gate <- struct{}{}
	select {
	case l := <-lines:
		if !strings.Contains(l, `"content":"one"`) {
			t.Fatalf("first event %s", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the gated chunk never came")
	}
	if n := s.ChunksWritten(); n != 1 {
		t.Errorf("ChunksWritten = %d while the gate holds chunk two, want 1", n)
	}
	cancel() // the client goes away while the fake waits at the gate
	select {
	case d := <-s.Disconnected():
		if d.Request != 0 || d.Chunks != 1 {
			t.Errorf("Disconnect = %+v, want request 0 after 1 chunk", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no disconnect signal")
	}
	for range lines {
	}
}

func TestUnknownEndpoint(t *testing.T) {
	t.Parallel()
	s := llmtest.NewServer(t)
	resp, err := s.Client().Get(s.URL() + "/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /models = %d, want 404", resp.StatusCode)
	}
}
