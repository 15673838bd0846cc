package market

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxSymbolLen bounds a symbol's length. Yahoo's longest everyday symbols (FX, futures, foreign listings such
// as "EURUSD=X", "0700.HK") are well below it; anything longer is more likely a paste accident or an attack.
const MaxSymbolLen = 20

// exchangeSuffixes are Yahoo's one-letter market suffixes. "X.T" is a Tokyo listing and must keep its dot,
// whereas "BRK.B" is share class B and becomes "BRK-B".
var exchangeSuffixes = map[byte]bool{'L': true, 'T': true, 'V': true, 'F': true}

// NormalizeSymbol turns what a person typed into the one form every provider and cache key uses, or fails
// with ErrInvalidSymbol.
//
// The canonical form is Yahoo's, since that is the provider most symbols end up at: upper case ("aapl" ->
// "AAPL"), and share classes with a dash ("BRK.B" and "BRK-B" -> "BRK-B"). A dot stays where it marks an
// exchange ("7203.T", "VOD.L", "RY.TO"); a one-letter suffix is read as a share class unless it is one of
// Yahoo's one-letter exchange suffixes (L, T, V, F). Index carets ("^GSPC"), currency and futures suffixes
// ("EURUSD=X", "GC=F") and crypto pairs ("BTC-USD") pass through.
//
// Only A-Z, 0-9 and . - ^ = are allowed, so a symbol can never carry a space, quote, control character, path
// separator or "..": it is safe in a URL path, a file name and a log line. Input is not trimmed; callers split
// user text into words first. Some real symbols with other characters (India's "M&M.NS") are refused by
// design.
func NormalizeSymbol(raw string) (string, error) {
	invalid := func(reason string) (string, error) {
		shown := raw
		if rs := []rune(shown); len(rs) > MaxSymbolLen+4 {
			shown = string(rs[:MaxSymbolLen+4]) + "..."
		}
		return "", fmt.Errorf("%w %q: %s", ErrInvalidSymbol, shown, reason)
	}
	if raw == "" {
		return invalid("empty")
	}
	if len(raw) > MaxSymbolLen {
		return invalid(fmt.Sprintf("longer than %d characters", MaxSymbolLen))
	}
	// Check bytes before upper-casing: strings.ToUpper maps some non-ASCII letters (U+017F) to ASCII ones.
	b := []byte(raw)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-', c == '^', c == '=':
		default:
			// Name the character typed, not its first byte ("Н", not "Ð").
			r, _ := utf8.DecodeRuneInString(raw[i:])
			return invalid(fmt.Sprintf("character %q not allowed", r))
		}
	}
	s := string(b)
	body := s
	if strings.HasPrefix(s, "^") {
		body = s[1:]
	}
	if body == "" {
		return invalid("no letters or digits")
	}
	if strings.Contains(body, "^") {
		return invalid("'^' only allowed at the start")
	}
	isSep := func(c byte) bool { return c == '.' || c == '-' || c == '=' }
	if isSep(body[0]) || isSep(body[len(body)-1]) {
		return invalid("starts or ends with a separator")
	}
	for i := 1; i < len(body); i++ {
		if isSep(body[i]) && isSep(body[i-1]) {
			return invalid("two separators in a row")
		}
	}
	if eq := strings.IndexByte(body, '='); eq >= 0 {
		suffix := body[eq+1:]
		if len(suffix) > 2 || strings.ContainsAny(suffix, ".-=0123456789") {
			return invalid("'=' must be followed by a one- or two-letter suffix such as =X or =F")
		}
	}
	if isShareClass(body) {
		body = body[:len(body)-2] + "-" + body[len(body)-1:]
	}
	if strings.HasPrefix(s, "^") {
		return "^" + body, nil
	}
	return body, nil
}

// isShareClass reports whether s looks like a US ticker with a dotted class letter, such as "BRK.B".
func isShareClass(s string) bool {
	n := len(s)
	if n < 3 || n > 7 || s[n-2] != '.' || exchangeSuffixes[s[n-1]] {
		return false
	}
	for i := 0; i < n; i++ {
		if i != n-2 && (s[i] < 'A' || s[i] > 'Z') {
			return false
		}
	}
	return true
}
