package llmtest

import (
	"context"
	"errors"
	"io"
	"strings"

	openai "github.com/sashabaranov/go-openai"
)

// Bare streams one answer from the fake with a plain go-openai loop and no
// forgebot code: the baseline that overhead benchmarks compare against.
type Bare struct {
	api *openai.Client
	req openai.ChatCompletionRequest
}

// NewBare prepares a bare client for this server, asking prompt.
func (s *Server) NewBare(key, prompt string) *Bare {
	cfg := openai.DefaultConfig(key)
	cfg.BaseURL, cfg.HTTPClient = s.URL(), s.Client()
	return &Bare{api: openai.NewClientWithConfig(cfg), req: openai.ChatCompletionRequest{
		Model: "bench", Stream: true, StreamOptions: &openai.StreamOptions{IncludeUsage: true},
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: prompt}},
	}}
}

// Stream reads one whole answer and returns its text.
func (b *Bare) Stream(ctx context.Context) (string, error) {
	stream, err := b.api.CreateChatCompletionStream(ctx, b.req)
	if err != nil {
		return "", err
	}
	defer stream.Close()
	var text strings.Builder
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return text.String(), nil
		}
		if err != nil {
			return text.String(), err
		}
		for _, c := range resp.Choices {
			text.WriteString(c.Delta.Content)
		}
	}
}
