package market

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestClassOfAndCalendar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sym, typ string
		want     AssetClass
		days     int
	}{
		{"AAPL", "EQUITY", Equity, 252}, {"AAPL", "", Equity, 252}, {"SPY", "ETF", Equity, 252},
		{"BTC-USD", "CRYPTOCURRENCY", Crypto, 365}, {"BTC-USD", "", Crypto, 365}, {"BRK-B", "", Equity, 252},
		{"EURUSD=X", "CURRENCY", FX, 260}, {"EURUSD=X", "", FX, 260}, {"^GSPC", "INDEX", Equity, 252},
	} {
		if got := ClassOf(tc.sym, tc.typ); got != tc.want || got.DaysPerYear() != tc.days {
			t.Errorf("ClassOf(%q, %q) = %s (%d days), want %s (%d)", tc.sym, tc.typ, got, got.DaysPerYear(), tc.want, tc.days)
		}
	}
}

func TestInferPrecision(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p     float64
		class AssetClass
		want  int
	}{{135.35, Equity, 2}, {1.11714, FX, 4}, {151.2, FX, 3}, {0.5432, Crypto, 3}, {0.00001234, Crypto, 7}, {7344.88, Crypto, 2}} {
		if got := InferPrecision(tc.p, tc.class); got != tc.want {
			t.Errorf("InferPrecision(%v, %s) = %d, want %d", tc.p, tc.class, got, tc.want)
		}
	}
	// The provider's hint wins over inference.
	s := Series{Bars: []Bar{{Close: 1.1}}, Class: FX, PriceHint: 5}
	if s.Precision() != 5 {
		t.Errorf("precision with hint 5 = %d", s.Precision())
	}
}

func TestVolatilityByCalendar(t *testing.T) {
	t.Parallel()
	closes := []float64{100, 101, 99, 102, 103, 101, 104, 102, 105, 103, 106}
	eq, cr := VolatilityPerYear(closes, 10, 252)[10], VolatilityPerYear(closes, 10, 365)[10]
	// Same daily deviation, a longer year: crypto's annualised figure is sqrt(365/252) ≈ 1.2x larger.
	if r := cr / eq; math.Abs(r-math.Sqrt(365.0/252)) > 1e-12 {
		t.Fatalf("crypto/equity volatility ratio %v", r)
	}
	if Volatility(closes, 10)[10] != eq {
		t.Fatal("Volatility is not the equity calendar")
	}
}

// bars makes a weekday series of closes from start.
func weekdayBars(start time.Time, closes ...float64) []Bar {
	var out []Bar
	d := start
	for _, c := range closes {
		for d.Weekday() == time.Saturday || d.Weekday() == time.Sunday {
			d = d.AddDate(0, 0, 1)
		}
		out = append(out, Bar{Date: d, Open: c, High: c, Low: c, Close: c, Volume: 1000})
		d = d.AddDate(0, 0, 1)
	}
	return out
}

func TestCheckJumps(t *testing.T) {
	t.Parallel()
	start := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	split := Series{Symbol: "X", Bars: weekdayBars(start, 400, 404, 101, 102)}
	w := CheckJumps(split)
	if len(w) != 1 || w[0].Kind != "split" || !w[0].Date.Equal(split.Bars[2].Date) ||
		!strings.Contains(w[0].Text, "4:1 split") || !strings.Contains(w[0].Text, "no split is reported") {
		t.Fatalf("4:1 jump: %+v", w)
	}
	if ind := Compute(split, 0); !ind.Suspect() {
		t.Fatal("a series with a split jump is not suspect")
	}
	split.Actions = []Action{{Date: split.Bars[2].Date, Kind: "split", Numerator: 4, Denominator: 1}}
	if w := CheckJumps(split); len(w) != 1 || !strings.Contains(w[0].Text, "not adjusted for it") {
		t.Fatalf("jump with its split event: %+v", w)
	}
	reverse := Series{Symbol: "X", Bars: weekdayBars(start, 1, 1.02, 10.1)}
	if w := CheckJumps(reverse); len(w) != 1 || !strings.Contains(w[0].Text, "1:10 split") {
		t.Fatalf("reverse split: %+v", w)
	}
	gap := Series{Symbol: "X", Bars: weekdayBars(start, 100, 70)}
	if w := CheckJumps(gap); len(w) != 1 || w[0].Kind != "gap" {
		t.Fatalf("-30%% gap: %+v", w)
	}
	// The same -30 % is within crypto's bound; 15 % is beyond FX's.
	gap.Class = Crypto
	if w := CheckJumps(gap); len(w) != 0 {
		t.Fatalf("crypto -30%%: %+v", w)
	}
	fx := Series{Symbol: "EURUSD=X", Class: FX, Bars: weekdayBars(start, 1.10, 1.265)}
	if w := CheckJumps(fx); len(w) != 1 {
		t.Fatalf("fx +15%%: %+v", w)
	}
	calm := Series{Symbol: "X", Bars: weekdayBars(start, 100, 110, 95, 100)}
	if w := CheckJumps(calm); len(w) != 0 {
		t.Fatalf("calm series: %+v", w)
	}
}

func TestStaleness(t *testing.T) {
	t.Parallel()
	fri := time.Date(2020, 11, 6, 0, 0, 0, 0, time.UTC)
	eq := Indicators{AsOf: fri, Class: Equity}
	if s := Staleness(eq, time.Date(2020, 11, 10, 12, 0, 0, 0, time.UTC)); s != "" {
		t.Errorf("Friday's bar on Tuesday is stale: %s", s)
	}
	if s := Staleness(eq, time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)); !strings.Contains(s, "stale") || !strings.Contains(s, "2020-11-06") {
		t.Errorf("a 2020 bar in 2025: %q", s)
	}
	cr := Indicators{AsOf: fri, Class: Crypto}
	if s := Staleness(cr, time.Date(2020, 11, 10, 12, 0, 0, 0, time.UTC)); s == "" {
		t.Error("a crypto bar four days old is not stale")
	}
}

func TestYahooMetaLiveBarAndEvents(t *testing.T) {
	t.Parallel()
	body := recorded(t, "chart-AAPL-2020-08-31-to-2020-11-07.json")
	s, err := parseYahooChart("AAPL", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if s.Class != Equity || s.TimeZone != "America/New_York" || s.PriceHint != 2 || s.Exchange != "NMS" || s.Live != nil {
		t.Fatalf("meta: class %s zone %s hint %d exchange %s live %v", s.Class, s.TimeZone, s.PriceHint, s.Exchange, s.Live)
	}
	if got := s.LastTime.Format("2006-01-02 15:04 MST"); got != "2020-11-06 09:30 EST" {
		t.Errorf("last bar time %s", got)
	}
	if len(s.Actions) != 2 || s.Actions[0].Kind != "split" || s.Actions[0].Ratio() != 4 ||
		s.Actions[0].Date.Format(time.DateOnly) != "2020-08-31" || s.Actions[1].Kind != "dividend" ||
		s.Actions[1].Amount != 0.205 || s.Actions[1].Date.Format(time.DateOnly) != "2020-11-06" {
		t.Fatalf("actions %+v", s.Actions)
	}
	// Yahoo's prices are split-adjusted, so the recorded 4:1 split leaves no jump to warn about.
	if w := CheckJumps(s); len(w) != 0 {
		t.Fatalf("warnings on adjusted data: %+v", w)
	}

	// The same answer read mid-session on the last bar's day: the bar is live and left out.
	var chart map[string]any
	json.Unmarshal([]byte(body), &chart)
	meta := chart["chart"].(map[string]any)["result"].([]any)[0].(map[string]any)["meta"].(map[string]any)
	meta["regularMarketTime"] = 1604683800 // 2020-11-06 12:30 New York
	meta["currentTradingPeriod"].(map[string]any)["regular"] = map[string]any{"start": 1604673000, "end": 1604696400}
	b, _ := json.Marshal(chart)
	live, err := parseYahooChart("AAPL", b)
	if err != nil {
		t.Fatal(err)
	}
	if live.Live == nil || len(live.Bars) != len(s.Bars)-1 || live.AsOf().Format(time.DateOnly) != "2020-11-05" ||
		live.Live.Close != s.Bars[len(s.Bars)-1].Close || live.Live.Date.Format("15:04 MST") != "12:30 EST" {
		t.Fatalf("live bar: %+v, %d bars, as of %s", live.Live, len(live.Bars), live.AsOf())
	}

	fx, err := parseYahooChart("EURUSD=X", []byte(recorded(t, "chart-EURUSD=X-2020-01-01-to-2020-01-03.json")))
	if err != nil || fx.Class != FX || fx.Precision() != 4 || fx.Live != nil {
		t.Fatalf("fx: %v %s %d", err, fx.Class, fx.Precision())
	}
	btc, err := parseYahooChart("BTC-USD", []byte(recorded(t, "chart-BTC-USD-2020-01-01-to-2020-01-03.json")))
	if err != nil || btc.Class != Crypto || btc.TimeZone != "UTC" || btc.AsOf().Format(time.DateOnly) != "2020-01-03" {
		t.Fatalf("btc: %v %s %s %s", err, btc.Class, btc.TimeZone, btc.AsOf())
	}
}

func TestNullVolumeIsNotZero(t *testing.T) {
	t.Parallel()
	var chart map[string]any
	json.Unmarshal([]byte(recorded(t, "chart-AAPL-2020-08-31-to-2020-11-07.json")), &chart)
	q := chart["chart"].(map[string]any)["result"].([]any)[0].(map[string]any)["indicators"].(map[string]any)["quote"].([]any)[0].(map[string]any)
	vol := q["volume"].([]any)
	vol[len(vol)-1] = nil
	b, _ := json.Marshal(chart)
	s, err := parseYahooChart("AAPL", b)
	if err != nil {
		t.Fatal(err)
	}
	if last := s.Bars[len(s.Bars)-1]; !last.NoVolume {
		t.Fatal("null volume not marked")
	}
	if ind := Compute(s, 0); ind.VolumeVsAvg20.OK {
		t.Fatalf("volume ratio from a null volume: %v", ind.VolumeVsAvg20)
	}
}
