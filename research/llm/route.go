package llm

import (
	"fmt"
	"log/slog"

	"github.com/tokensforge/forgebot/billing"
)

// Route is one way to reach a model: an OpenAI-compatible endpoint, a key and
// a price. Its Kind decides which billing bucket pays for what it generates.
//
// Route formats and logs itself with the key masked, so printing a Route, or
// a Result holding one, never reveals APIKey.
type Route struct {
	ID         string            // e.g. "openai-4o-mini"; used in logs, failures and health
	Kind       billing.RouteKind // official or routed; billing.BucketFor(Kind) is the paying bucket
	Model      string            // model name sent to the API
	BaseURL    string            // OpenAI-compatible base, e.g. https://api.openai.com/v1
	APIKey     string            // never logged, never in an error string
	KeyEnv     string            // name of the env var holding the key (for display)
	Price      billing.Price
	MaxContext int // tokens; 0 = unknown
	Enabled    bool
	// BillsAfterClose: the provider bills the whole response even when the
	// stream is closed early (some do: it goes on generating after a
	// disconnect). A cancel mid-call on such a route is charged as it
	// bills: the call's prompt and its full output limit.
	BillsAfterClose bool
	// Limits, when set, are admitted within by the Client's Gate across
	// every instance calling the route.
	Limits Limits
}

var (
	_ slog.LogValuer = Route{}
	_ fmt.Stringer   = Route{}
	_ fmt.GoStringer = Route{}
)

// Bucket is the balance that pays for this route.
func (r Route) Bucket() billing.Bucket { return billing.BucketFor(r.Kind) }

// String describes the route for people, with the key masked.
func (r Route) String() string {
	return fmt.Sprintf("%s (%s %s at %s, key %s)", r.ID, r.Kind, r.Model, r.BaseURL, MaskKey(r.APIKey))
}

// GoString keeps %#v from printing the key.
func (r Route) GoString() string {
	return fmt.Sprintf("llm.Route{ID:%q, Kind:%q, Model:%q, BaseURL:%q, APIKey:%q, KeyEnv:%q, Price:%q, MaxContext:%d, Enabled:%t}",
		r.ID, r.Kind, r.Model, r.BaseURL, MaskKey(r.APIKey), r.KeyEnv, r.Price.String(), r.MaxContext, r.Enabled)
}

// LogValue logs the route as a group without its key.
func (r Route) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", r.ID),
		slog.String("kind", string(r.Kind)),
		slog.String("model", r.Model),
		slog.String("base_url", r.BaseURL),
		slog.String("key", MaskKey(r.APIKey)),
	)
}
