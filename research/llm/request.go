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
	Messages  []Message
	MaxTokens int // upper bound on output tokens; 0 = the provider's default
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
