package llm

import (
	"context"
	"time"
)

// Limits are a route's rate limits as its provider publishes them; a zero
// field is no limit. Concurrent bounds calls in flight at once,
// RequestsPerMinute the calls started in any minute, TokensPerMinute their
// tokens (the counted prompt plus the output limit, as providers count a
// request when they admit it).
type Limits struct {
	Concurrent        int   `json:"concurrent,omitempty"`
	RequestsPerMinute int   `json:"requests_per_minute,omitempty"`
	TokensPerMinute   int64 `json:"tokens_per_minute,omitempty"`
}

// Any reports whether any limit is set.
func (l Limits) Any() bool {
	return l.Concurrent > 0 || l.RequestsPerMinute > 0 || l.TokensPerMinute > 0
}

// Gate admits attempts on routes within their Limits, for every process
// calling the route (the engine implements it over the store). The Client
// enters it before every attempt on a route with limits, and leaves it when
// the attempt ends.
type Gate interface {
	// Enter waits until an attempt of tokens (prompt plus output limit) may
	// be made on route, calling wait (when not nil) with its place in line
	// whenever it learns it, and returns the pass to leave with. It returns
	// an error only when ctx ends (wrapping its cause); a gate that cannot
	// reach its store lets the attempt go.
	Enter(ctx context.Context, route Route, tokens int64, wait func(Queue)) (Pass, error)
}

// Pass is an admitted attempt.
type Pass interface {
	// Leave ends the attempt. throttled says the provider answered 429:
	// the gate then lowers the route's admitted rate for a while and holds
	// every caller back for retryAfter (or a second when it is 0).
	Leave(throttled bool, retryAfter time.Duration)
}

// Queue is an attempt's place in a route's line.
type Queue struct {
	Route string
	Ahead int           // attempts on the route queued before this one
	Wait  time.Duration // expected wait before this attempt starts; 0 when unknown
}
