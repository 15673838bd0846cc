package llm_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
)

func TestMaskKey(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"":                                "(none)",
		"abc":                             "****",
		"sk-abc1234":                      "****",
		"sk-proj-abcdefghijklmnopa1b2":    "sk-...a1b2",
		"sk-or-v1-0123456789abcdefa1b2":   "sk-...a1b2",
		"gsk_0123456789abcdefghij":        "...ghij",
		"0123456789abcdefXYZW":            "...XYZW",
		"sk-0123456789a":                  "...789a", // prefix shown only when 8+ chars stay hidden
		"verylongvendorprefix-0123456789": "...6789", // a long "prefix" is key material
	} {
		got := llm.MaskKey(key)
		if got != want {
			t.Errorf("MaskKey(%q) = %q, want %q", key, got, want)
		}
		if len(key) >= 8 && strings.Contains(got, key[:len(key)-4]) {
			t.Errorf("MaskKey(%q) = %q reveals more than the last 4", key, got)
		}
	}
}

func TestRouteHidesItsKey(t *testing.T) {
	t.Parallel()
	r := llm.Route{ID: "a", Kind: billing.RouteRouted, Model: "m", BaseURL: "https://x/v1", APIKey: "sk-proj-SECRETSECRETSECRET9999"}
	for _, s := range []string{fmt.Sprint(r), fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r), logged(func(l *slog.Logger) { l.Info("x", "route", r) })} {
		if strings.Contains(s, "SECRET") {
			t.Errorf("route printed with its key: %s", s)
		}
		if !strings.Contains(s, "sk-...9999") {
			t.Errorf("route printed without its masked key: %s", s)
		}
	}
	if r.Bucket() != billing.BucketRouted {
		t.Errorf("Bucket() = %s, want routed", r.Bucket())
	}
}
