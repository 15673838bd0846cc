package research

import (
	"context"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// BenchmarkEngineStreamOverhead streams the same 500 chunks from the same
// fake through a bare go-openai loop and through the engine's model call
// (llm.Client, progress events to a sink), side by side: the ratio of their
// ns/op is the engine's overhead per token.
func BenchmarkEngineStreamOverhead(b *testing.B) {
	const n = 500
	fake := llmtest.NewServer(b)
	chunks := make([]string, n)
	for i := range chunks {
		chunks[i] = "word "
	}
	fake.SetDefault(llmtest.Stream(chunks...))
	const key = "sk-bench-0123456789abcdef"
	msgs := []llm.Message{{Role: "user", Content: "Write 500 words."}}

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

	b.Run("engine_call", func(b *testing.B) {
		events := 0
		e := &Engine{Sink: SinkFunc(func(Event) { events++ })}
		w := &llm.Client{HTTPClient: fake.Client(), Health: llm.NewHealth(llm.HealthOptions{})}
		routes := []llm.Route{{ID: "bench", Kind: billing.RouteOfficial, Model: "bench", BaseURL: fake.URL(), APIKey: key, Enabled: true}}
		run := Run{ID: "rbench", Stages: []Stage{{Name: "write", Kind: StageLLM}}, Price: billing.Price{InputPerM: 150_000, OutputPerM: 600_000}}
		for b.Loop() {
			res, err := e.call(context.Background(), &run, w, routes, llm.Request{Messages: msgs})
			if err != nil || len(res.Text) != 5*n {
				b.Fatalf("%v, %d bytes", err, len(res.Text))
			}
		}
	})
}
