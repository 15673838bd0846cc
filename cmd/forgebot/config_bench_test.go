package main

import (
	"testing"

	"github.com/tokensforge/forgebot/research/market"
)

func TestParseBenchmarks(t *testing.T) {
	t.Parallel()
	b, err := parseBenchmarks("equity=qqq, crypto=BTC-USD,fx=none")
	if err != nil || len(b) != 3 || b[market.Equity] != "QQQ" || b[market.Crypto] != "BTC-USD" || b[market.FX] != "" {
		t.Fatalf("%v %v", b, err)
	}
	for _, bad := range []string{"equity", "stocks=SPY", "equity=a b"} {
		if _, err := parseBenchmarks(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
