package llm

// Local token counting. Quotes are made before any call and a provider may
// send no usage at all, so forgebot needs a count that is cheap, stable and
// errs on the generous side rather than a tokenizer per model.

// bytesPerToken is the heuristic: about four characters of English per token
// for GPT-style BPE vocabularies. It counts UTF-8 bytes, not runes, because
// non-Latin scripts take more tokens per character, roughly in proportion to
// their byte length.
const bytesPerToken = 4

// Chat format overhead, after OpenAI's published counting recipe: every
// message is framed by about three tokens plus one for its role, and every
// reply is primed with three more.
const (
	tokensPerMessage = 4
	tokensPerReply   = 3
)

// CountTokens estimates the tokens in s: ceil(len(s)/4) over UTF-8 bytes, and
// at least 1 for a non-empty string. It is an estimate (billing.UsageLocal),
// used for quotes and when a provider reports no usage.
func CountTokens(s string) int64 {
	return tokensForBytes(int64(len(s)))
}

func tokensForBytes(n int64) int64 {
	return (n + bytesPerToken - 1) / bytesPerToken
}

// CountPromptTokens estimates the prompt tokens of a chat: each message's
// content (and the tool calls it carries) plus its per-message framing, plus
// the reply priming.
func CountPromptTokens(msgs []Message) int64 {
	if len(msgs) == 0 {
		return 0
	}
	n := int64(tokensPerReply)
	for _, m := range msgs {
		n += tokensPerMessage + CountTokens(m.Content)
		if m.ToolCallID != "" {
			n += CountTokens(m.ToolCallID)
		}
		for _, c := range m.ToolCalls {
			n += tokensPerToolCall + CountTokens(c.ID) + CountTokens(c.Name) + CountTokens(c.Arguments)
		}
	}
	return n
}

// tokensPerToolCall frames one tool call (its type, the JSON around it).
const tokensPerToolCall = 8

// CountRequestTokens estimates what a request's prompt costs: its messages
// and the tool definitions sent with them (providers bill those as input).
func CountRequestTokens(req Request) int64 {
	n := CountPromptTokens(req.Messages)
	for _, t := range req.Tools {
		n += tokensPerToolCall + CountTokens(t.Name) + CountTokens(t.Description) + CountTokens(string(t.Parameters))
	}
	return n
}
