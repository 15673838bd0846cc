package llm_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

var priceTool = llm.Tool{Name: "price_summary", Description: "a symbol's price summary",
	Parameters: json.RawMessage(`{"type":"object","properties":{"symbol":{"type":"string"}},"required":["symbol"]}`)}

// TestStreamedParallelToolCalls: two calls streamed as real servers send them
// (index, id and name first, then argument fragments) come back whole and in
// order, the tools went on the wire, and their bytes count as output.
func TestStreamedParallelToolCalls(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.fake.Enqueue(llmtest.ToolCalls(
		llmtest.ToolCall{ID: "call_a", Name: "price_summary", Arguments: `{"symbol":"NVDA"}`},
		llmtest.ToolCall{ID: "call_b", Name: "price_summary", Arguments: `{"symbol":"AMD"}`},
	).WithArgChunks(5).WithoutUsage())
	r := route("a", billing.RouteOfficial, tb.fake)
	res, err := tb.client.Stream(t.Context(), []llm.Route{r}, llm.Request{
		Messages: []llm.Message{{Role: llm.RoleUser, Content: "Compare NVDA and AMD."}}, Tools: []llm.Tool{priceTool}, MaxTokens: 200,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []llm.ToolCall{{ID: "call_a", Name: "price_summary", Arguments: `{"symbol":"NVDA"}`}, {ID: "call_b", Name: "price_summary", Arguments: `{"symbol":"AMD"}`}}
	if !reflect.DeepEqual(res.ToolCalls, want) || res.FinishReason != "tool_calls" || res.Text != "" {
		t.Fatalf("tool calls %+v, finish %q, text %q", res.ToolCalls, res.FinishReason, res.Text)
	}
	streamed := int64(0)
	for _, c := range want {
		streamed += int64(len(c.ID) + len(c.Name) + len(c.Arguments))
	}
	if res.Usage.CompletionTokens != (streamed+3)/4 || res.Usage.CompletionSource != billing.UsageLocal {
		t.Fatalf("usage %+v, want the calls' %d bytes counted locally", res.Usage, streamed)
	}
	q := tb.fake.Requests()[0]
	if !reflect.DeepEqual(q.Tools, []string{"price_summary"}) || q.ToolChoice != "auto" {
		t.Fatalf("request offered tools %v with choice %q", q.Tools, q.ToolChoice)
	}
}

// TestToolTurnsGoOnTheWire: an assistant turn's calls and the tool results
// answering them reach the server, and count in the prompt.
func TestToolTurnsGoOnTheWire(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	msgs := []llm.Message{
		{Role: llm.RoleUser, Content: "Is NVDA up?"},
		{Role: llm.RoleAssistant, ToolCalls: []llm.ToolCall{{ID: "c1", Name: "price_summary", Arguments: `{"symbol":"NVDA"}`}}},
		{Role: llm.RoleTool, ToolCallID: "c1", Content: `{"close":135.2}`},
	}
	res, err := tb.client.Stream(t.Context(), []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, llm.Request{Messages: msgs, Tools: []llm.Tool{priceTool}, ToolChoice: llm.ToolChoiceNone}, nil)
	if err != nil {
		t.Fatal(err)
	}
	q := tb.fake.Requests()[0]
	if len(q.Messages) != 3 || !reflect.DeepEqual(q.Messages[1].CallNames(), []string{"price_summary"}) || q.Messages[2].ToolCallID != "c1" || q.ToolChoice != "none" {
		t.Fatalf("wire messages %+v, choice %q", q.Messages, q.ToolChoice)
	}
	if res.Text == "" {
		t.Fatal("no answer")
	}
	plain := llm.CountPromptTokens([]llm.Message{{Role: "user", Content: "Is NVDA up?"}, {Role: "assistant"}, {Role: "tool", Content: `{"close":135.2}`}})
	if got := llm.CountPromptTokens(msgs); got <= plain {
		t.Fatalf("prompt count %d does not include the tool call (without: %d)", got, plain)
	}
	if got := llm.CountRequestTokens(llm.Request{Messages: msgs, Tools: []llm.Tool{priceTool}}); got <= llm.CountPromptTokens(msgs) {
		t.Fatalf("request count %d does not include the tool definitions", got)
	}
}

// TestToolArgumentsCutAtTheLimit: arguments that never end are closed at the
// output limit; the call comes back cut (malformed), within the limit.
func TestToolArgumentsCutAtTheLimit(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	resp := llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"NVDA","note":"aaaaaaaaaaaaaaaaaaaa`))
	resp.Forever = true
	tb.fake.Enqueue(resp)
	res, err := tb.client.Stream(t.Context(), []llm.Route{route("a", billing.RouteOfficial, tb.fake)}, llm.Request{
		Messages: []llm.Message{{Role: llm.RoleUser, Content: "x"}}, Tools: []llm.Tool{priceTool}, MaxTokens: 40,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Capped || len(res.ToolCalls) != 1 || json.Valid([]byte(res.ToolCalls[0].Arguments)) || res.Usage.CompletionTokens > 40 {
		t.Fatalf("capped %t, calls %+v, usage %+v", res.Capped, res.ToolCalls, res.Usage)
	}
}
