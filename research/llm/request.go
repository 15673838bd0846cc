package llm

import "github.com/tokensforge/forgebot/billing"

// Chat roles.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Message is one turn of a chat.
type Message struct{ Role, Content string } // Role: system, user, assistant

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
