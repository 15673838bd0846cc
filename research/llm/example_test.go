package llm_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// A route that is overloaded once, then answers: the Client retries, streams
// the deltas as they come and reports where the usage figures came from.
func ExampleClient_Stream() {
	fake := llmtest.NewServer(nil) // in a test: llmtest.NewServer(t)
	defer fake.Close()
	fake.Enqueue(llmtest.Error(503, "overloaded"), llmtest.Stream("Buy", " low.").WithUsage(20, 2))

	c := &llm.Client{
		Sleep:     func(context.Context, time.Duration) error { return nil }, // no real backoff in an example
		OnFailure: func(f llm.Failure) { fmt.Printf("failed: %s HTTP %d\n", f.Class, f.HTTPStatus) },
	}
	routes := []llm.Route{{
		ID: "official-mini", Kind: billing.RouteOfficial, Model: "gpt-4o-mini",
		BaseURL: fake.URL(), APIKey: "sk-example-0123456789abcdef", Enabled: true,
	}}
	req := llm.Request{Messages: []llm.Message{{Role: llm.RoleUser, Content: "One line of advice?"}}, MaxTokens: 20}

	res, err := c.Stream(context.Background(), routes, req, func(text string, outTokens int64) {
		fmt.Printf("delta %q, ~%d tokens so far\n", text, outTokens)
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Printf("%q from %s (%s bucket) after %d attempts\n", res.Text, res.Route.ID, res.Route.Bucket(), res.Attempts)
	fmt.Printf("usage: %d in, %d out (%s)\n", res.Usage.PromptTokens, res.Usage.CompletionTokens, res.Usage.CompletionSource)
	// Output:
	// failed: server_error HTTP 503
	// delta "Buy", ~1 tokens so far
	// delta " low.", ~2 tokens so far
	// "Buy low." from official-mini (credit bucket) after 2 attempts
	// usage: 20 in, 2 out (provider)
}
