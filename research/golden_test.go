package research

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/research/market"
)

var update = flag.Bool("update", false, "rewrite the golden reports in testdata/golden")

// yahooFixtures serves recorded chart answers (market/testdata/yahoo), optionally edited, by symbol.
func yahooFixtures(t *testing.T, edit func(sym string, chart map[string]any)) *httptest.Server {
	t.Helper()
	files := map[string]string{
		"AAPL":     "chart-AAPL-2020-08-31-to-2020-11-07.json",
		"BTC-USD":  "chart-BTC-USD-2020-01-01-to-2020-01-03.json",
		"EURUSD=X": "chart-EURUSD=X-2020-01-01-to-2020-01-03.json",
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sym := strings.TrimPrefix(r.URL.Path, "/v8/finance/chart/")
		name, ok := files[sym]
		if !ok {
			http.Error(w, `{"chart":{"result":null,"error":{"code":"Not Found","description":"no such symbol"}}}`, http.StatusNotFound)
			return
		}
		b, err := os.ReadFile(filepath.Join("market/testdata/yahoo", name))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if edit != nil {
			var chart map[string]any
			if err := json.Unmarshal(b, &chart); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			edit(sym, chart)
			b, _ = json.Marshal(chart)
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// result0 is chart.result[0] of a decoded answer.
func result0(chart map[string]any) map[string]any {
	return chart["chart"].(map[string]any)["result"].([]any)[0].(map[string]any)
}

// splitCSV writes AAPL.csv with the bars before 2016-06-01 at four times their price and a quarter of their
// volume: what a file that was never adjusted for a 4:1 split on that day looks like.
func splitCSV(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("market/testdata/AAPL.csv")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	out := []string{lines[0]}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if f[0] < "2016-06-01" {
			for i := 1; i <= 4; i++ {
				var x float64
				fmt.Sscan(f[i], &x)
				f[i] = fmt.Sprintf("%.6f", x*4)
			}
			var v float64
			fmt.Sscan(f[5], &v)
			f[5] = fmt.Sprintf("%.0f", v/4)
		}
		out = append(out, strings.Join(f, ","))
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "AAPL.csv"), []byte(strings.Join(out, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// goldenText is what a run shows a reader about its symbols, from the same code a run uses: each symbol's
// context, warnings, figures and signals, then every model stage as the offline analyst writes it.
func goldenText(t *testing.T, p market.Provider, syms []string, now time.Time, depth Depth) string {
	t.Helper()
	plan := Plans[depth]
	series, errs := market.FetchAll(context.Background(), p, syms, plan.Lookback)
	g := gathered{symbols: syms, series: series, ind: map[string]market.Indicators{}, failed: map[string]string{}}
	for s, err := range errs {
		g.failed[s] = err.Error()
	}
	for s, ser := range series {
		g.ind[s] = market.Compute(ser, plan.Window)
	}
	e := &Engine{Market: p, Now: func() time.Time { return now }}
	e.addContext(context.Background(), &g, plan)
	d := e.promptData(g, plan)
	var b strings.Builder
	fmt.Fprintf(&b, "request %s at %s, depth %s; data %s\n", strings.Join(syms, " "), now.Format(time.RFC3339), depth, d.AsOf)
	for _, s := range d.Symbols {
		fmt.Fprintf(&b, "\n%s (as of %s)\n  %s\n", s.Symbol, s.AsOf, s.Context)
		for _, w := range s.Warnings {
			fmt.Fprintf(&b, "  WARNING: %s\n", w)
		}
		for _, f := range s.Figures {
			fmt.Fprintf(&b, "  %s: %s\n", f.Label, f.Value)
		}
		sigs := market.Signals(series[s.Symbol], g.ind[s.Symbol])
		fmt.Fprintf(&b, "  signals: %d\n", len(sigs))
		for _, sg := range sigs {
			fmt.Fprintf(&b, "    %s: %s\n", sg.Kind, sg.Detail)
		}
	}
	for sym, err := range g.failed {
		fmt.Fprintf(&b, "\n%s failed: %s\n", sym, err)
	}
	for _, st := range plan.Stages(syms) {
		if st.Kind != StageLLM {
			continue
		}
		back, err := parseDataBlock(buildPrompt(st, d, plan.OutputLimit))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\n== %s ==\n%s\n", st.Name, offlineText(back))
	}
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata/golden", name+".txt")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to write it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from %s (rerun with -update and review the diff):\n%s", name, path, got)
	}
}

func TestGoldenReports(t *testing.T) {
	t.Parallel()
	yahoo := func(srv *httptest.Server, now time.Time) market.Provider {
		return market.NewYahoo(market.WithBaseURL(srv.URL), market.WithClock(func() time.Time { return now }), market.WithCacheTTL(0), market.WithRetries(0, 0))
	}
	monday := time.Date(2020, 11, 9, 8, 0, 0, 0, time.UTC) // the Monday after the AAPL recording's last bar
	cases := []struct {
		name  string
		p     func(t *testing.T) market.Provider
		syms  []string
		now   time.Time
		depth Depth
	}{
		{"aapl-csv-quick", func(t *testing.T) market.Provider { return market.NewCSV("market/testdata") }, []string{"AAPL"}, time.Date(2017, 2, 17, 12, 0, 0, 0, time.UTC), Quick},
		{"aapl-csv-deep", func(t *testing.T) market.Provider { return market.NewCSV("market/testdata") }, []string{"AAPL"}, time.Date(2017, 2, 17, 12, 0, 0, 0, time.UTC), Deep},
		{"mixed-yahoo", func(t *testing.T) market.Provider { return yahoo(yahooFixtures(t, nil), monday) }, []string{"AAPL", "BTC-USD", "EURUSD=X"}, monday, Standard},
		{"split-csv", func(t *testing.T) market.Provider { return market.NewCSV(splitCSV(t)) }, []string{"AAPL"}, time.Date(2017, 2, 17, 12, 0, 0, 0, time.UTC), Quick},
		{"stale-csv", func(t *testing.T) market.Provider { return market.NewCSV("market/testdata") }, []string{"AAPL"}, time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC), Quick},
		{"live-bar-yahoo", func(t *testing.T) market.Provider {
			// Mid-session on 2020-11-06: the market's last trade at 12:30 New York time, inside the regular
			// session of the last bar's day.
			return yahoo(yahooFixtures(t, func(_ string, chart map[string]any) {
				meta := result0(chart)["meta"].(map[string]any)
				meta["regularMarketTime"] = 1604683800
				meta["currentTradingPeriod"].(map[string]any)["regular"] = map[string]any{"start": 1604673000, "end": 1604696400}
			}), time.Date(2020, 11, 6, 17, 30, 0, 0, time.UTC))
		}, []string{"AAPL"}, time.Date(2020, 11, 6, 17, 30, 0, 0, time.UTC), Quick},
		{"null-volume-yahoo", func(t *testing.T) market.Provider {
			return yahoo(yahooFixtures(t, func(_ string, chart map[string]any) {
				q := result0(chart)["indicators"].(map[string]any)["quote"].([]any)[0].(map[string]any)
				vol := q["volume"].([]any)
				vol[len(vol)-1] = nil
			}), monday)
		}, []string{"AAPL"}, monday, Quick},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkGolden(t, tc.name, goldenText(t, tc.p(t), tc.syms, tc.now, tc.depth))
		})
	}
}

// TestGoldenScanTable ranks a whole preset watchlist as a scan does, on the demo provider (deterministic),
// with a stale CSV symbol and an unknown one mixed in through a provider that routes by symbol.
func TestGoldenScanTable(t *testing.T) {
	t.Parallel()
	rows := goldenScanRows(t)
	checkGolden(t, "scan-table", ScanText(rows)+"\n\n"+string(ScanCSV(rows)))
}

// goldenScanRows is the golden scan's ranked table.
func goldenScanRows(t *testing.T) []ScanRow {
	t.Helper()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	demo := market.NewDemo(func() time.Time { return now })
	syms := market.Presets["us-megacaps"]
	plan := Plans[Quick]
	series, errs := market.FetchAll(context.Background(), demo, syms, plan.Lookback)
	ind := map[string]market.Indicators{}
	for s, ser := range series {
		ind[s] = market.Compute(ser, plan.Window)
	}
	// AAPL from the 2017 file: stale now, so in the table but not ranked by its signals.
	old, err := market.NewCSV("market/testdata").History(context.Background(), "AAPL", plan.Lookback)
	if err != nil {
		t.Fatal(err)
	}
	series["AAPL"], ind["AAPL"] = old, market.Compute(old, plan.Window)
	failed := map[string]string{"NOPE": "unknown symbol"}
	for s, err := range errs {
		failed[s] = err.Error()
	}
	rows := scanTable(append(slices.Clone(syms), "NOPE"), series, ind, failed, now)
	var picked []string
	for _, r := range rows {
		if r.Score > 0 && len(picked) < plan.MaxSymbols {
			picked = append(picked, r.Symbol)
		}
	}
	markPicked(rows, picked, true)
	if len(rows) != len(syms)+1 || rows[len(rows)-1].Symbol != "NOPE" {
		t.Fatalf("rows %+v", rows)
	}
	for i := 1; i < len(rows)-1; i++ {
		if rows[i].Score > rows[i-1].Score {
			t.Fatalf("not ranked by score: %+v", rows)
		}
	}
	return rows
}

// TestScanImage: the golden scan's table drawn as a picture, as Telegram and Discord get it: a phone-wide
// PNG, tall enough for every row, inked but not smeared, the picked rows highlighted, and below the size a
// chat client takes as a photo.
func TestScanImage(t *testing.T) {
	t.Parallel()
	rows := goldenScanRows(t)
	if ScanFitsText(rows, 40) || !ScanFitsText(rows, 200) {
		t.Fatal("the fixed-width table's width is misjudged")
	}
	b, err := ScanImage(Report{Title: "Scan of us-megacaps", DataSource: "demo", Synthetic: true, Scan: rows})
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("CHART_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "scan-table.png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	if w != 1080 || h < 40*len(rows) || h > 4000 || len(b) > 2<<20 {
		t.Fatalf("picture %dx%d, %d bytes, for %d rows", w, h, len(b), len(rows))
	}
	var ink, marked, total int
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			total++
			if r < 0x8000 && g < 0x8000 && bl < 0x8000 {
				ink++
			}
			if r>>8 == 255 && g>>8 == 243 && bl>>8 == 196 {
				marked++
			}
		}
	}
	picked := 0
	for _, r := range rows {
		if r.Picked {
			picked++
		}
	}
	if share := float64(ink) / float64(total); share < 0.01 || share > 0.4 {
		t.Fatalf("%.1f%% of the picture is ink: blank or smeared", share*100)
	}
	if picked == 0 || marked < picked*w/2 {
		t.Fatalf("%d highlighted pixels for %d picked rows", marked, picked)
	}
	// More rows than fit a phone's width as text: it grows, it never cuts a row.
	many := slices.Repeat(rows, 4)
	b2, err := ScanImage(Report{Scan: many})
	if err != nil {
		t.Fatal(err)
	}
	img2, err := png.Decode(bytes.NewReader(b2))
	if err != nil || img2.Bounds().Dy() <= h {
		t.Fatalf("a table of %d rows is %v high (%v), want taller than %d", len(many), img2.Bounds(), err, h)
	}
}
