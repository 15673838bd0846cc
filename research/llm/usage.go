package llm

import "fmt"

// Usage band: how far above forgebot's local count a provider's figure may be
// before it is not believed. The local count (bytes/4) is a rough estimate
// (number-heavy JSON and non-Latin text take more tokens than it says), so
// the band is wide: a figure is believed up to UsageFactor*local +
// UsageSlack. A
// completion may also reach the request's max_tokens, because reasoning
// tokens are billed but not streamed. Figures above the band, negative ones,
// absurd ones (beyond 2^40) and ones whose sum exceeds the route's context
// window (when known) are not charged: the local count is, and the receipt
// keeps both. A figure below the local count is believed: it is what the
// provider bills, and charging the local count instead would charge the
// user for tokens nobody billed.
const (
	UsageFactor = 3
	UsageSlack  = 256
)

// CheckUsage says why reported usage is not to be believed against the local
// count, or "" when it is. maxTokens is the request's output limit and
// maxContext the route's context window (0 = unknown).
func CheckUsage(reported, local Usage, maxTokens, maxContext int64) string {
	in, out := reported.PromptTokens, reported.CompletionTokens
	switch {
	case in < 0 || out < 0:
		return "negative"
	case maxContext > 0 && (in > maxContext || out > maxContext || in+out > maxContext):
		return fmt.Sprintf("more than the route's context window of %d tokens", maxContext)
	}
	if why := outOfBand("prompt", in, local.PromptTokens, 0); why != "" {
		return why
	}
	return outOfBand("completion", out, local.CompletionTokens, maxTokens)
}

// outOfBand checks one figure against its local count; ceiling, when above
// the band's top, raises it.
func outOfBand(what string, got, local, ceiling int64) string {
	const huge = 1 << 40 // beyond any real count: keeps the arithmetic below from overflowing
	if got > huge {
		return fmt.Sprintf("%s of %d tokens is beyond any real count", what, got)
	}
	if got > max(UsageFactor*local+UsageSlack, ceiling) {
		return fmt.Sprintf("%s more than %d times the local count of %d", what, UsageFactor, local)
	}
	return ""
}
