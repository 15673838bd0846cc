package llm_test

import (
	"testing"

	"github.com/tokensforge/forgebot/research/llm"
)

func TestCountTokens(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]int64{
		"":                         0,
		"a":                        1,
		"four":                     1,
		"fives":                    2,
		"Hello, world!":            4, // 13 bytes
		"日本語":                      3, // 9 bytes: non-Latin text counts more per character
		string(make([]byte, 4000)): 1000,
	} {
		if got := llm.CountTokens(s); got != want {
			t.Errorf("CountTokens(%d bytes) = %d, want %d", len(s), got, want)
		}
	}
}

func TestCountPromptTokens(t *testing.T) {
	t.Parallel()
	if got := llm.CountPromptTokens(nil); got != 0 {
		t.Errorf("no messages = %d tokens, want 0", got)
	}
	msgs := []llm.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}}
	// 3 (reply priming) + 2 × 4 (framing and role) + 3 ("Be brief.") + 1 ("Hi").
	if got := llm.CountPromptTokens(msgs); got != 15 {
		t.Errorf("CountPromptTokens = %d, want 15", got)
	}
	if empty := llm.CountPromptTokens([]llm.Message{{Role: "user"}}); empty != 7 {
		t.Errorf("an empty message costs %d tokens, want its overhead, 7", empty)
	}
}
