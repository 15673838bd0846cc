package billing

import (
	"crypto/rand"
	"encoding/base64"
	"time"
)

// UsageSource says where a token count came from.
type UsageSource string

const (
	UsageProvider UsageSource = "provider" // reported by the model's API
	UsageLocal    UsageSource = "local"    // counted by forgebot: an estimate
)

// RouteKind decides which bucket pays: official routes pay from Credit,
// routed routes from the routed balance.
type RouteKind string

const (
	RouteOfficial RouteKind = "official"
	RouteRouted   RouteKind = "routed"
)

// BucketFor returns the bucket that pays for a route kind.
func BucketFor(k RouteKind) Bucket {
	if k == RouteRouted {
		return BucketRouted
	}
	return BucketCredit
}

// RouteKindFor returns the route kind a bucket pays for.
func RouteKindFor(b Bucket) RouteKind {
	if b == BucketRouted {
		return RouteRouted
	}
	return RouteOfficial
}

// Receipt is the public record of what one run cost and why. Its PublicID is
// the unguessable token in the receipt link.
type Receipt struct {
	PublicID string
	RunID    string
	// Purchase says what was bought, like "research AAPL, NVDA (standard)".
	Purchase        string
	AccountID       AccountID
	HoldID          int64
	Model           string
	Route           string
	RouteKind       RouteKind
	Bucket          Bucket
	TokensIn        int64
	TokensOut       int64
	TokensInSource  UsageSource
	TokensOutSource UsageSource
	Held            Money
	Captured        Money
	Released        Money
	Status          string
	Attempts        int
	Notes           string // e.g. a cross-bucket fallback the user consented to
	StartedAt       time.Time
	FinishedAt      time.Time
	CreatedAt       time.Time
	// Steps list an agent run's steps, in order: every model and tool call
	// with its tokens, cost and time (empty for the staged depths).
	Steps []ReceiptStep
}

// ReceiptStep is one step of an agent run on its receipt. A model step's
// Cost is its tokens at its route's price, rounded up to the micro-dollar
// on its own; the charge is rounded once on the run's total, so the steps
// may add up to a few micro-dollars more. A tool step costs nothing.
type ReceiptStep struct {
	Step      int           `json:"step"` // the model call it belongs to, from 1
	Kind      string        `json:"kind"` // model or tool
	Label     string        `json:"label"`
	TokensIn  int64         `json:"tokens_in,omitempty"`
	TokensOut int64         `json:"tokens_out,omitempty"`
	Cost      Money         `json:"cost,omitempty"`
	Took      time.Duration `json:"took"`
	Error     string        `json:"error,omitempty"`
}

// NewPublicID returns a receipt token of 144 random bits, URL-safe.
func NewPublicID() string {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("billing: no randomness: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// FailedRequest records one failed attempt to call a model route and what it
// cost under the charge policy (by default nothing).
type FailedRequest struct {
	ID         int64
	RunID      string
	AccountID  AccountID
	Route      string
	Bucket     Bucket
	HTTPStatus int    // 0 when no response came (timeout, broken connection)
	ErrorClass string // rate_limited, server_error, timeout, broken_stream, ...
	Charged    Money
	Detail     string
	At         time.Time
}
