package research

import (
	"strings"
	"unicode/utf8"
)

// CleanText makes text from a model or a user safe for any surface to show:
// valid UTF-8; no NUL, no C0 or C1 control character but newline and tab (a
// carriage return becomes a newline, so ESC sequences and line overwrites
// cannot reach a terminal); no bidirectional override, embedding, isolate or
// mark (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C), which could
// make text read in another order than it is stored; no BOM; line and
// paragraph separators become newlines.
func CleanText(s string) string {
	if isClean(s) {
		return s
	}
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\r\n", "\n")
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r == '\r' || r == '\u2028' || r == '\u2029':
			b.WriteByte('\n')
		case unsafeRune(r):
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isClean(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\n' && c != '\t' || c == 0x7f || c >= 0x80 {
			// Only ASCII is cleared byte by byte; anything else takes the
			// rune loop.
			if c >= 0x80 {
				return cleanRunes(s[i:])
			}
			return false
		}
	}
	return true
}

func cleanRunes(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '\r' || r == '\u2028' || r == '\u2029' || unsafeRune(r) {
			return false
		}
	}
	return true
}

// unsafeRune reports a rune CleanText drops.
func unsafeRune(r rune) bool {
	switch {
	case r < 0x20 && r != '\n' && r != '\t', r >= 0x7f && r <= 0x9f:
		return true
	case r == '\u061c', r == '\u200e', r == '\u200f', r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069', r == '\ufeff':
		return true
	}
	return false
}
