package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
)

// TestWalletLedgerColumns: wallet ledger shows posted and held changes in
// their own signed columns, whose sums are the balances (a hold, its capture
// and its release no longer add up in one amount column).
func TestWalletLedgerColumns(t *testing.T) {
	t.Parallel()
	db, c := fundedAnn(t)
	out, errb := newScreen(), newScreen()
	if code := run(t.Context(), []string{"research", "AAPL", "--yes", "--user", "cli:ann"}, researchEnv(db),
		stdio{in: strings.NewReader(""), out: out, err: errb, interrupts: make(chan os.Signal)}); code != 0 {
		t.Fatalf("research: %d %s", code, errb.String())
	}
	ledger := c.ok("wallet", "ledger", "--user", "cli:ann")
	lines := strings.Split(strings.TrimRight(ledger, "\n"), "\n")
	if !strings.Contains(lines[0], "posted ±") || !strings.Contains(lines[0], "held ±") || strings.Contains(lines[0], "amount") {
		t.Fatalf("header: %q", lines[0])
	}
	var w map[string]map[string]int64
	_ = json.Unmarshal([]byte(c.ok("wallet", "show", "--user", "cli:ann", "--json")), &w)
	sum := strings.Fields(lines[len(lines)-1])
	if sum[0] != "sum" || sum[1] != "+"+billing.Money(w["credit"]["posted_micros"]).String() || sum[2] != "·" {
		t.Fatalf("sum line %q, wallet %v\n%s", lines[len(lines)-1], w, ledger)
	}
	for _, kind := range []string{"hold", "capture", "release"} {
		if !strings.Contains(ledger, " "+kind+" ") {
			t.Errorf("no %s entry:\n%s", kind, ledger)
		}
	}
}
