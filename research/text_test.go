package research_test

import (
	"testing"

	"github.com/tokensforge/forgebot/research"
)

func TestCleanText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain\ttext\nnext":                    "plain\ttext\nnext",
		"evil\u202Etxt.exe":                    "eviltxt.exe",
		"\x1b[2Jcleared\x00nul":                "[2Jclearednul",
		"a\r\nb\rc":                            "a\nb\nc",
		"c1\u0085\u009bx\x7f":                  "c1x",
		"iso\u2066late\u2069 \u200fmark\u061c": "isolate mark",
		"bad\xffutf8":                          "bad\uFFFDutf8",
		"émoji 👩‍💻 ok":                         "émoji 👩‍💻 ok",
		"\ufeffbom\u2028line":                  "bom\nline",
	} {
		if got := research.CleanText(in); got != want {
			t.Errorf("CleanText(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCleanText(f *testing.F) {
	f.Add("\x1b[2J\u202e\x00@everyone")
	f.Fuzz(func(t *testing.T, s string) {
		out := research.CleanText(s)
		if research.CleanText(out) != out {
			t.Fatalf("not idempotent: %q", s)
		}
		for _, r := range out {
			if r < 0x20 && r != '\n' && r != '\t' || r >= 0x7f && r <= 0x9f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 {
				t.Fatalf("CleanText(%q) kept %U", s, r)
			}
		}
	})
}
