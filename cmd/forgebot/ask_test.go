package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAskCommand: `forgebot ask` quotes an agent run with its cap, runs the
// offline agent on demo data to its answer, and prints the question, the
// answer, the figures and the steps; with a cap its steps meet, it pauses
// to ask on stderr, and "c" continues it with an additional hold. The
// ledger is clean after both.
func TestAskCommand(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "forgebot.db")
	c := cli{t, db}
	c.ok("migrate")
	c.ok("wallet", "topup", "--user", "cli:ann", "--bucket", "credit", "--amount", "1.00", "--key", "ann-1")
	env := func(k string) string {
		switch k {
		case "DATABASE_URL":
			return db
		case "FORGE_MARKET":
			return "demo"
		}
		return ""
	}
	tty := false
	ask := func(stdin string, args ...string) result {
		out, errb := newScreen(), newScreen()
		code := run(t.Context(), append([]string{"ask"}, args...), env, stdio{in: strings.NewReader(stdin), out: out, err: errb, interrupts: make(chan os.Signal), errTerminal: tty})
		return result{code, out.String(), errb.String()}
	}
	if r := ask("", "--user", "cli:ann"); r.code != exitBadInput {
		t.Fatalf("no question: %+v", r)
	}
	if r := ask("", "why?", "--cap", "0.000001", "--yes", "--user", "cli:ann"); r.code != exitBadInput || !strings.Contains(r.stderr, "too low") {
		t.Fatalf("a cap below one step: %+v", r)
	}
	r := ask("y\n", "is NVDA overbought against the other semis?", "--cap", "0.50", "--user", "cli:ann")
	if r.code != 0 {
		t.Fatalf("ask: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"Cap", "at most 12 steps", "Ask to continue"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("quote lacks %q:\n%s", want, r.stderr)
		}
	}
	for _, want := range []string{"Question: is NVDA overbought", "Answer", "RSI 14 =", "Steps", "tool: scan of semis", "model: answer", "succeeded: charged $0.0", "Not financial advice"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = ask("y\nc\n", "is NVDA overbought against the other semis?", "--cap", "0.002", "--user", "cli:ann")
	if r.code != 0 || !strings.Contains(r.stderr, "The run paused to ask") || !strings.Contains(r.stdout, "Answer") {
		t.Fatalf("ask with a small cap: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "held $0.012") {
		t.Errorf("the extension is not in the charge line:\n%s", r.stdout)
	}
	// On a terminal each redraw of the step line fits one row (the step
	// names the tools it calls, which runs long): a wrapped line is not
	// redrawn in place by \r.
	tty = true
	r = ask("", "is NVDA overbought against the other semis?", "--cap", "0.50", "--yes", "--user", "cli:ann")
	if r.code != 0 || !strings.Contains(r.stderr, "\r\033[K") {
		t.Fatalf("ask on a terminal: exit %d\n%q", r.code, r.stderr)
	}
	for _, l := range strings.Split(r.stderr, "\r\033[K")[1:] {
		if l = strings.SplitN(l, "\n", 2)[0]; len([]rune(l)) > 79 {
			t.Errorf("a redrawn line of %d characters: %q", len([]rune(l)), l)
		}
	}
	c.ok("ledger", "check")
}
