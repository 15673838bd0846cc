package research

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

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
		cfg := openai.DefaultConfig(key)
		cfg.BaseURL, cfg.HTTPClient = fake.URL(), fake.Client()
		api := openai.NewClientWithConfig(cfg)
		req := openai.ChatCompletionRequest{Model: "bench", Stream: true, StreamOptions: &openai.StreamOptions{IncludeUsage: true},
			Messages: []openai.ChatCompletionMessage{{Role: "user", Content: msgs[0].Content}}}
		for b.Loop() {
			stream, err := api.CreateChatCompletionStream(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			var text strings.Builder
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				for _, c := range resp.Choices {
					text.WriteString(c.Delta.Content)
				}
			}
			stream.Close()
			if text.Len() != 5*n {
				b.Fatalf("got %d bytes", text.Len())
			}
		}
	})

	b.Run("engine_call", func(b *testing.B) {
		events := 0
		e := &Engine{Sink: SinkFunc(func(Event) { events++ })}
		w := &llm.Client{HTTPClient: fake.Client(), Health: llm.NewHealth(llm.HealthOptions{})}
		routes := []llm.Route{{ID: "bench", Kind: billing.RouteOfficial, Model: "bench", BaseURL: fake.URL(), APIKey: key, Enabled: true}}
		run := Run{ID: "rbench", Stages: []Stage{{Name: "write", Kind: StageLLM}}, Price: billing.Price{InputPerM: 150_000, OutputPerM: 600_000}}
		for b.Loop() {
			res, err := e.call(context.Background(), run, w, routes, llm.Request{Messages: msgs})
			if err != nil || len(res.Text) != 5*n {
				b.Fatalf("%v, %d bytes", err, len(res.Text))
			}
		}
	})
}
