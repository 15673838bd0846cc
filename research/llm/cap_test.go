package llm_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// TestOutputLimitEnforcedLocally: a route that ignores max_tokens and never
// stops is closed at the limit; the text is kept, cut to the limit, and the
// local count is charged.
func TestOutputLimitEnforcedLocally(t *testing.T) {
	t.Parallel()
	for name, chunk := range map[string]string{"small chunks": "word ", "one huge chunk": strings.Repeat("x", 100_000), "multibyte": "日本語のテキスト"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			tb.fake.Enqueue(llmtest.Endless(chunk))
			req := hello
			req.MaxTokens = 50
			res, err := tb.client.Stream(context.Background(), []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, req, nil)
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if !res.Capped || res.FinishReason != "length" || res.Text == "" || len(res.Text) > 50*4 {
				t.Fatalf("capped %t, finish %q, %d bytes of text", res.Capped, res.FinishReason, len(res.Text))
			}
			if !strings.HasPrefix(strings.Repeat(chunk, 200), res.Text) && !strings.HasPrefix(chunk, res.Text) {
				t.Fatalf("kept text is not what arrived: %q", res.Text[:min(40, len(res.Text))])
			}
			if res.Usage.CompletionTokens > 50 || res.Usage.CompletionTokens <= 0 || res.Usage.CompletionSource != billing.UsageLocal {
				t.Fatalf("usage = %+v", res.Usage)
			}
			select {
			case <-tb.fake.Disconnected():
			case <-time.After(5 * time.Second):
				t.Fatal("the endless stream was not closed")
			}
		})
	}
}

// TestUsageDistrusted: absurd, negative and out-of-band usage is not
// charged: the local count is, with the reported figures and an anomaly kept.
func TestUsageDistrusted(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		in, out int
		bad     bool
	}{
		"absurd":          {1000, 3e18, true},
		"negative":        {-5, -7, true},
		"negative out":    {18, -1, true},
		"over context":    {100_000, 100_000, true},
		"far above local": {5000, 3, true},
		"close to local":  {21, 3, false},
		"reasoning":       {20, 64, false}, // up to max_tokens: hidden reasoning is billed
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			health := llm.NewHealth(llm.HealthOptions{})
			tb.client.Health = health
			tb.fake.Enqueue(llmtest.Stream("Hel", "lo", " there").WithUsage(tc.in, tc.out))
			res, err := tb.client.Stream(context.Background(), []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, hello, nil)
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			local := llm.Usage{PromptTokens: llm.CountPromptTokens(hello.Messages), CompletionTokens: llm.CountTokens("Hello there"),
				PromptSource: billing.UsageLocal, CompletionSource: billing.UsageLocal}
			if !tc.bad {
				if res.Anomaly != nil || res.Usage.PromptTokens != int64(tc.in) || res.Usage.CompletionSource != billing.UsageProvider {
					t.Fatalf("believable usage not believed: %+v, anomaly %v", res.Usage, res.Anomaly)
				}
				return
			}
			if res.Usage != local || res.Anomaly == nil || res.Anomaly.Class != llm.ClassUsageAnomaly || res.Reported == nil ||
				res.Reported.CompletionTokens != int64(tc.out) || res.Reported.PromptTokens != int64(tc.in) {
				t.Fatalf("usage %+v, reported %+v, anomaly %v; want the local count charged and the report kept", res.Usage, res.Reported, res.Anomaly)
			}
			if st := health.Stats("a"); st.Samples != 1 || st.ConsecutiveFailures != 1 {
				t.Fatalf("health = %+v, want the anomaly counted as a failure", st)
			}
			// Any cost of the charged figures fits in a Money.
			if _, err := (billing.Price{InputPerM: billing.Micro, OutputPerM: 4 * billing.Micro}).CostChecked(res.Usage.PromptTokens, res.Usage.CompletionTokens); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// budget is a test llm.Budget allowing a fixed number of attempts.
type budget struct {
	mu       sync.Mutex
	left     int
	reserved []int64
	spent    []llm.Usage
}

func (b *budget) Reserve(r llm.Route, prompt, maxOut int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left == 0 {
		return errors.New("no room")
	}
	b.left--
	b.reserved = append(b.reserved, prompt+maxOut)
	return nil
}

func (b *budget) Spent(r llm.Route, u llm.Usage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spent = append(b.spent, u)
}

// TestBudgetRefusesAttempts: every attempt is reserved first; once the
// budget refuses, no request is sent and Stream says so.
func TestBudgetRefusesAttempts(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.fake.Enqueue(llmtest.Broken("part"), llmtest.Error(500, "x"), llmtest.Stream("never sent"))
	b := &budget{left: 2}
	req := hello
	req.Budget = b
	_, err := tb.client.Stream(context.Background(), []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, req, nil)
	if !errors.Is(err, llm.ErrOverBudget) {
		t.Fatalf("err = %v, want ErrOverBudget", err)
	}
	if n := len(tb.fake.Requests()); n != 2 {
		t.Fatalf("%d requests sent, want 2", n)
	}
	if len(b.spent) != 2 || b.spent[0].CompletionTokens != 1 || b.spent[0].PromptTokens <= 0 || b.spent[1] != (llm.Usage{}) {
		t.Fatalf("spent = %+v: want the broken stream's prompt and part, nothing for the 500", b.spent)
	}
	if b.reserved[0] != llm.CountPromptTokens(hello.Messages)+int64(hello.MaxTokens) {
		t.Fatalf("reserved %v", b.reserved)
	}
}
