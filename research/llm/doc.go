// Package llm calls chat models on OpenAI-compatible APIs, streaming.
//
// A Client sends one Request down an ordered list of Routes: each route is
// tried and retried on transient failures (429, 5xx, timeouts, broken or
// erroring streams) with backoff that honours Retry-After, then the next route
// is tried. The caller owns the order and therefore the money: a route's
// RouteKind decides which billing bucket pays, and crossing buckets needs the
// user's consent, which only the caller knows about. Result.CrossBucket and
// the Failures list say what happened so the run engine can bill and explain.
//
// Token counts come from the provider's final usage chunk when it sends one
// and are otherwise counted here with CountTokens, marked billing.UsageLocal
// so a receipt can say the figure is an estimate.
//
// Cancellation is a feature: cancelling the context returns at once with the
// partial text and closes the HTTP connection, so the upstream stops
// generating (and, for most providers, stops billing).
//
// API keys never leave a Route in readable form: errors are scrubbed of the
// key, logs carry route ids, and Route formats and logs itself with MaskKey.
//
// Package llmtest provides the httptest fake of an OpenAI-compatible
// streaming API that this package's tests, and its callers' tests, run against.
package llm
