package llm

import (
	"encoding/json"

	"github.com/tokensforge/forgebot/billing"
)

// Chat roles.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool" // a tool's result, answering one ToolCall
)

// Message is one turn of a chat.
type Message struct {
	Role    string `json:"role"` // system, user, assistant, tool
	Content string `json:"content,omitempty"`
	// ToolCalls are the calls an assistant turn asked for.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID names the call a tool turn answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
}

// Tool is a function the model may call: its name, what it does and a JSON
// schema of its arguments (sent as is).
type Tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
}

// ToolCall is one call a model asked for. Arguments is the JSON text the
// model wrote, unchecked: it may be malformed, or cut at the output limit.
type ToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Tool choices (Request.ToolChoice).
const (
	ToolChoiceAuto = "auto" // the model decides (the default when tools are given)
	ToolChoiceNone = "none" // the model must answer in text
)

// Request is what the caller asks of a model; the route supplies the model name.
type Request struct {
	Messages []Message
	// MaxTokens bounds output tokens; 0 = the provider's default. It is sent
	// as max_tokens and also enforced locally: once the local count of the
	// streamed output reaches it, the stream is closed and what arrived is
	// kept (cut to the limit), whatever the route does with max_tokens.
	MaxTokens int
	// Budget, when set, is asked before every attempt whether that attempt's
	// worst case still fits, and told what every attempt used.
	Budget Budget
	// Tools the model may call (streamed, possibly several in parallel);
	// Result.ToolCalls holds the calls it made. ToolChoice is "auto"
	// (default) or "none".
	Tools      []Tool
	ToolChoice string
	// OnQueue, when set, is told the call's place in line while an attempt
	// waits for its route's capacity (Client.Gate).
	OnQueue func(Queue)
}

// Budget bounds what a Stream call may spend across its attempts (retries
// and fallbacks included). The engine implements it against the hold that
// pays for each route.
type Budget interface {
	// Reserve is called before each attempt with the counted prompt and the
	// output limit; an error refuses the attempt (the next route is tried).
	Reserve(route Route, promptTokens, maxOutTokens int64) error
	// Spent reports what a finished attempt used as far as forgebot can
	// tell: the charged usage of an answer, the local count of a cancelled
	// or broken stream, zero for an attempt refused before any stream.
	Spent(route Route, u Usage)
}

// Usage is what a call consumed, with where each figure came from: the
// provider's final usage chunk (billing.UsageProvider) or a local count
// (billing.UsageLocal, an estimate). Receipts show the source.
type Usage struct {
	PromptTokens, CompletionTokens int64
	PromptSource, CompletionSource billing.UsageSource
}

// localUsage is the estimate used when the provider sent no usage.
func localUsage(prompt, completion int64) Usage {
	return Usage{
		PromptTokens: prompt, CompletionTokens: completion,
		PromptSource: billing.UsageLocal, CompletionSource: billing.UsageLocal,
	}
}
