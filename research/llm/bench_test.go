package llm_test

import (
	"context"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// BenchmarkStreamOverhead streams the same 500-chunk answer, with no delays,
// through a bare go-openai loop and through Client.Stream, over the same HTTP
// client and fake. The difference per op divided by 500 is what Client adds
// per chunk (retry bookkeeping, idle timer, [DONE] watch, token estimate,
// the onDelta call). Both paths accumulate the text, as any caller would.
func BenchmarkStreamOverhead(b *testing.B) {
	const n = 500
	fake := llmtest.NewServer(b)
	chunks := make([]string, n)
	for i := range chunks {
		chunks[i] = "word "
	}
	fake.SetDefault(llmtest.Stream(chunks...))
	hc := fake.Client()
	msgs := []llm.Message{{Role: llm.RoleUser, Content: "Write 500 words."}}
	const key = "sk-bench-0123456789abcdef"

	b.Run("bare_go_openai", func(b *testing.B) {
		bare := fake.NewBare(key, msgs[0].Content)
		b.ReportAllocs()
		for b.Loop() {
			text, err := bare.Stream(context.Background())
			if err != nil || len(text) != 5*n {
				b.Fatalf("%v, %d bytes", err, len(text))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/chunk")
	})

	b.Run("client_stream", func(b *testing.B) {
		c := &llm.Client{HTTPClient: hc, Health: llm.NewHealth(llm.HealthOptions{})}
		routes := []llm.Route{{ID: "bench", Kind: billing.RouteOfficial, Model: "bench", BaseURL: fake.URL(), APIKey: key, Enabled: true}}
		req := llm.Request{Messages: msgs}
		var deltas int
		onDelta := func(string, int64) { deltas++ }
		b.ReportAllocs()
		for b.Loop() {
			res, err := c.Stream(context.Background(), routes, req, onDelta)
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Text) != 5*n {
				b.Fatalf("got %d bytes", len(res.Text))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/chunk")
	})
}
