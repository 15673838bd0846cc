package market

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeSymbol(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"AAPL":     "AAPL",
		"aapl":     "AAPL",
		"BRK.B":    "BRK-B",
		"brk-b":    "BRK-B",
		"BF.B":     "BF-B",
		"BTC-USD":  "BTC-USD",
		"^GSPC":    "^GSPC",
		"^gspc":    "^GSPC",
		"EURUSD=X": "EURUSD=X",
		"gc=f":     "GC=F",
		"7203.T":   "7203.T",
		"VOD.L":    "VOD.L",
		"RY.TO":    "RY.TO",
		"0700.HK":  "0700.HK",
		"SAP.DE":   "SAP.DE",
		"X":        "X",
	} {
		got, err := NormalizeSymbol(raw)
		if err != nil || got != want {
			t.Errorf("NormalizeSymbol(%q) = %q, %v; want %q", raw, got, err, want)
		}
		// Normalising is idempotent: providers normalise again and must land on the same key.
		if again, err := NormalizeSymbol(got); err != nil || again != got {
			t.Errorf("NormalizeSymbol(%q) = %q, %v; not idempotent", got, again, err)
		}
	}
}

func TestNormalizeSymbolRejects(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"", " ", "AAPL ", " AAPL", "AA PL", "AAPL\n", "AAPL\x00", "\t",
		strings.Repeat("A", MaxSymbolLen+1),
		"'AAPL'", `"AAPL"`, "AAPL;DROP", "$(rm)", "`x`", "a|b", "<script>", "%2e%2e", "AAPL?x=1", "AAPL#",
		"../etc/passwd", "..", ".", "A..B", "A/B", `A\B`, "/AAPL", "C:AAPL",
		".AAPL", "AAPL.", "-AAPL", "AAPL-", "A.-B", "^", "^^GSPC", "A^B", "=X", "EURUSD=", "A=B=C", "A=XYZ", "A=1",
		"AAPſ", "ÄPPL", "AAPL\u200b",
	} {
		got, err := NormalizeSymbol(raw)
		if !errors.Is(err, ErrInvalidSymbol) {
			t.Errorf("NormalizeSymbol(%q) = %q, %v; want ErrInvalidSymbol", raw, got, err)
		}
	}
	_, err := NormalizeSymbol(strings.Repeat("A", 1000))
	if len(err.Error()) > 100 {
		t.Errorf("error repeats a huge input: %d bytes", len(err.Error()))
	}
}

func FuzzNormalizeSymbol(f *testing.F) {
	for _, s := range []string{"AAPL", "brk.b", "^GSPC", "EURUSD=X", "../x", "A..B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := NormalizeSymbol(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidSymbol) {
				t.Fatalf("error %v does not wrap ErrInvalidSymbol", err)
			}
			return
		}
		if s == "" || len(s) > MaxSymbolLen || strings.Contains(s, "..") || strings.ContainsAny(s, "/\\ \"'") {
			t.Fatalf("unsafe symbol %q from %q", s, raw)
		}
		if again, err := NormalizeSymbol(s); err != nil || again != s {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", raw, s, again, err)
		}
	})
}

// TestNormalizeSymbolNamesTheCharacter: a non-ASCII symbol's refusal names
// the character typed, not its first byte.
func TestNormalizeSymbolNamesTheCharacter(t *testing.T) {
	_, err := NormalizeSymbol("НВДА")
	if err == nil || !strings.Contains(err.Error(), `character 'Н' not allowed`) || strings.Contains(err.Error(), "Ð") {
		t.Fatalf("НВДА: %v", err)
	}
	_, err = NormalizeSymbol("AAPL€")
	if err == nil || !strings.Contains(err.Error(), `'€'`) {
		t.Fatalf("AAPL€: %v", err)
	}
}
