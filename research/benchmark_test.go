package research

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/research/market"
)

// A symbol measured against a benchmark that is itself (a copy of its file under another name) has beta
// and correlation 1 and no excess return; an asset class configured with no benchmark says so.
func TestBenchmarkPerAssetClass(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := os.ReadFile("market/testdata/AAPL.csv")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"AAPL.csv", "TWIN.csv"} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := market.NewCSV(dir)
	plan := Plans[Quick]
	gather := func(e *Engine) symbolData {
		series, _ := market.FetchAll(context.Background(), p, []string{"AAPL"}, plan.Lookback)
		g := gathered{symbols: []string{"AAPL"}, series: series, ind: map[string]market.Indicators{"AAPL": market.Compute(series["AAPL"], plan.Window)}}
		e.addContext(context.Background(), &g, plan)
		return e.promptData(g, plan).Symbols[0]
	}
	now := func() time.Time { return time.Date(2017, 2, 17, 0, 0, 0, 0, time.UTC) }
	twin := gather(&Engine{Market: p, Now: now, Benchmarks: map[market.AssetClass]string{market.Equity: "TWIN"}})
	rel := twin.Figures[len(twin.Figures)-2]
	if !strings.HasPrefix(rel.Label, "Relative to TWIN") || rel.Value != "+0.0 pts / +0.0 pts; beta 1.00, correlation 1.00" {
		t.Errorf("against its twin: %+v", rel)
	}
	if twin.Raw.Beta == nil || *twin.Raw.Beta != 1 {
		t.Errorf("raw beta %v", twin.Raw.Beta)
	}
	none := gather(&Engine{Market: p, Now: now, Benchmarks: map[market.AssetClass]string{market.Equity: ""}})
	if rel := none.Figures[len(none.Figures)-2]; rel.Value != "n/a (no benchmark for this asset class)" {
		t.Errorf("no benchmark: %+v", rel)
	}
	def := gather(&Engine{Market: p, Now: now})
	if rel := def.Figures[len(def.Figures)-2]; !strings.HasPrefix(rel.Label, "Relative to SPY") || !strings.Contains(rel.Value, "not available") {
		t.Errorf("default SPY missing from the folder: %+v", rel)
	}
}
