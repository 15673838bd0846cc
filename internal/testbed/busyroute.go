package testbed

import (
	"context"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// OneCallRoute is a catalog of one official route, "api-a" serving
// "gpt-test" on the bed's fake API, whose provider admits one call at once.
func OneCallRoute(url string) []llm.Route {
	return []llm.Route{{ID: "api-a", Kind: billing.RouteOfficial, Model: "gpt-test", BaseURL: url, APIKey: "sk-test-aaaa1111",
		Price: billing.Price{InputPerM: billing.Micro, OutputPerM: 4 * billing.Micro}, Enabled: true, Limits: llm.Limits{Concurrent: 1}}}
}

// BusyRoute makes a route with room for one call busy: who (funded with $1
// of Credit) confirms a quick run on model, whose call streams until release
// is called; BusyRoute returns once the fake API has that call. Every later
// stream of the bed's fake waits for release too.
func (b *Bed) BusyRoute(t testing.TB, who billing.Identity, model string) (run research.Run, release func()) {
	t.Helper()
	gate := make(chan struct{})
	b.LLM.SetDefault(llmtest.Stream("a ", "b ").WithGate(gate))
	b.Fund(who, billing.BucketCredit, billing.Micro)
	q, err := b.Engine.Quote(t.Context(), research.Request{Kind: research.KindResearch, Symbols: []string{"MSFT"}, Depth: research.Quick, Model: model, Owner: who})
	if err != nil {
		t.Fatal(err)
	}
	run, _, err = b.Engine.Confirm(t.Context(), q.ID, who, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.LLM.Received(1):
	case <-time.After(time.Minute):
		t.Fatal("the busy run never called the route")
	}
	return run, func() { close(gate) }
}

// Available is what who has available in bucket.
func (b *Bed) Available(t testing.TB, who billing.Identity, bucket billing.Bucket) billing.Money {
	t.Helper()
	acc, err := b.Store.EnsureAccount(context.Background(), who)
	if err != nil {
		t.Fatal(err)
	}
	bal, err := b.Store.Balances(context.Background(), acc)
	if err != nil {
		t.Fatal(err)
	}
	return bal[bucket].Available
}
