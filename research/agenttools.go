package research

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/market"
)

// The agent's tools: ordinary functions over research/market, each with a
// JSON schema the model sees, arguments decoded strictly and checked
// (unknown fields, wrong types, out-of-range values and unknown symbols are
// refused with a message the model reads), a result cut to the plan's
// ToolResultMax bytes, and the run's context, so a cancel stops it.

// agentTool is one tool.
type agentTool struct {
	name, description string
	schema            string // JSON schema of the arguments
	// run executes a call whose arguments were decoded and checked by args.
	run func(ctx context.Context, e *Engine, r Run, args toolArgs) (any, error)
}

// toolArgs are every tool's arguments; each tool reads its own.
type toolArgs struct {
	Symbol    string   `json:"symbol,omitempty"`
	Symbols   []string `json:"symbols,omitempty"`
	Period    string   `json:"period,omitempty"`
	Benchmark string   `json:"benchmark,omitempty"`
	Watchlist string   `json:"watchlist,omitempty"`
}

// periods are the windows a tool reads, by name.
var periods = map[string]time.Duration{
	"1m": 31 * 24 * time.Hour, "3m": 92 * 24 * time.Hour, "6m": 183 * 24 * time.Hour,
	"1y": 365 * 24 * time.Hour, "2y": 730 * 24 * time.Hour,
}

const periodSchema = `{"type":"string","enum":["1m","3m","6m","1y","2y"],"description":"the window, ending at the last bar; default %s"}`

var agentTools = []agentTool{
	{
		name:        "price_summary",
		description: "A symbol's close, its price return, high and low over a period, distance from the 52-week high and low, 20-day volatility and max drawdown.",
		schema:      `{"type":"object","properties":{"symbol":{"type":"string","description":"a ticker such as NVDA, BTC-USD or EURUSD=X"},"period":` + fmt.Sprintf(periodSchema, "6m") + `},"required":["symbol"],"additionalProperties":false}`,
		run:         toolPriceSummary,
	},
	{
		name:        "indicators",
		description: "A symbol's technical indicators: RSI 14, SMA 20/50/200 and the distance from them, MACD, ATR, Bollinger %B, weekly trend and RSI.",
		schema:      `{"type":"object","properties":{"symbol":{"type":"string"}},"required":["symbol"],"additionalProperties":false}`,
		run:         toolIndicators,
	},
	{
		name:        "relative_performance",
		description: "The price returns of several symbols over a period against a benchmark (default SPY for equities), with excess return, beta and correlation.",
		schema:      `{"type":"object","properties":{"symbols":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":6},"benchmark":{"type":"string","description":"default: SPY (BTC-USD for crypto)"},"period":` + fmt.Sprintf(periodSchema, "3m") + `},"required":["symbols"],"additionalProperties":false}`,
		run:         toolRelative,
	},
	{
		name:        "watchlist_scan",
		description: "Rank a watchlist (the user's own or a preset) by technical signals: each symbol's score, signals, close, 1-month return and RSI 14.",
		schema:      `{"type":"object","properties":{"watchlist":{"type":"string","description":"a watchlist name from the context"}},"required":["watchlist"],"additionalProperties":false}`,
		run:         toolScan,
	},
	{
		name:        "chart",
		description: "Draw a chart of up to 4 symbols over a period, attached to the answer (one symbol: price, volume, RSI and MACD panels; several: performance rebased to 100).",
		schema:      `{"type":"object","properties":{"symbols":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":4},"period":` + fmt.Sprintf(periodSchema, "6m") + `},"required":["symbols"],"additionalProperties":false}`,
		run:         toolChart,
	},
}

// llmTools are the tools as a request offers them.
func llmTools() []llm.Tool {
	out := make([]llm.Tool, len(agentTools))
	for i, t := range agentTools {
		out[i] = llm.Tool{Name: t.name, Description: t.description, Parameters: json.RawMessage(t.schema)}
	}
	return out
}

func toolByName(name string) (agentTool, bool) {
	for _, t := range agentTools {
		if t.name == name {
			return t, true
		}
	}
	return agentTool{}, false
}

func toolNames() string {
	names := make([]string, len(agentTools))
	for i, t := range agentTools {
		names[i] = t.name
	}
	return strings.Join(names, ", ")
}

// errBadArgs marks arguments the model must fix.
var errBadArgs = errors.New("invalid arguments")

// decodeArgs reads a call's arguments strictly and checks them against
// the tool's schema (required, enum, counts) and the symbol rules.
func decodeArgs(t agentTool, raw string) (toolArgs, error) {
	var a toolArgs
	if strings.TrimSpace(raw) == "" {
		raw = "{}"
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return a, fmt.Errorf("%w: not a JSON object of this tool's parameters: %v", errBadArgs, err)
	}
	if dec.More() {
		return a, fmt.Errorf("%w: more than one JSON value", errBadArgs)
	}
	var schema struct {
		Properties map[string]struct {
			Enum     []string `json:"enum"`
			MinItems int      `json:"minItems"`
			MaxItems int      `json:"maxItems"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	_ = json.Unmarshal([]byte(t.schema), &schema)
	var got map[string]json.RawMessage
	_ = json.Unmarshal([]byte(raw), &got)
	for _, k := range schema.Required {
		if _, ok := got[k]; !ok {
			return a, fmt.Errorf("%w: %q is required", errBadArgs, k)
		}
	}
	for k := range got {
		if _, ok := schema.Properties[k]; !ok {
			return a, fmt.Errorf("%w: unknown parameter %q", errBadArgs, k)
		}
	}
	if p, ok := schema.Properties["period"]; ok && a.Period != "" && !slices.Contains(p.Enum, a.Period) {
		return a, fmt.Errorf("%w: period %q: use one of %s", errBadArgs, a.Period, strings.Join(p.Enum, ", "))
	}
	if p, ok := schema.Properties["symbols"]; ok {
		if _, given := got["symbols"]; given && (len(a.Symbols) < p.MinItems || len(a.Symbols) > p.MaxItems) {
			return a, fmt.Errorf("%w: symbols takes %d to %d symbols, got %d", errBadArgs, p.MinItems, p.MaxItems, len(a.Symbols))
		}
	}
	var err error
	if a.Symbol != "" {
		if a.Symbol, err = market.NormalizeSymbol(a.Symbol); err != nil {
			return a, fmt.Errorf("%w: %v", errBadArgs, err)
		}
	} else if _, ok := got["symbol"]; ok {
		return a, fmt.Errorf("%w: symbol is empty", errBadArgs)
	}
	for i, s := range a.Symbols {
		if a.Symbols[i], err = market.NormalizeSymbol(s); err != nil {
			return a, fmt.Errorf("%w: %v", errBadArgs, err)
		}
	}
	a.Symbols = slices.Compact(a.Symbols)
	if a.Benchmark != "" {
		if a.Benchmark, err = market.NormalizeSymbol(a.Benchmark); err != nil {
			return a, fmt.Errorf("%w: benchmark: %v", errBadArgs, err)
		}
	}
	if _, ok := got["watchlist"]; ok && strings.TrimSpace(a.Watchlist) == "" {
		return a, fmt.Errorf("%w: watchlist is empty", errBadArgs)
	}
	return a, nil
}

// toolTimeout bounds one tool call (market data that hangs).
const toolTimeout = 30 * time.Second

// runTool executes one call and returns the result the model reads (an
// error is a result: {"error": ...}), bounded to max bytes, and the error
// text for the step ("" when it worked).
func (e *Engine) runTool(ctx context.Context, r Run, call llm.ToolCall, max int) (string, string) {
	t, ok := toolByName(call.Name)
	if !ok {
		msg := fmt.Sprintf("unknown tool %q; the tools are: %s", clipRunes(call.Name, 40), toolNames())
		return errorResult(msg), msg
	}
	args, err := decodeArgs(t, call.Arguments)
	if err != nil {
		return errorResult(err.Error()), err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	v, err := t.run(ctx, e, r, args)
	if err != nil {
		if ctx.Err() != nil {
			return errorResult("the tool was stopped"), "stopped: " + context.Cause(ctx).Error()
		}
		msg := err.Error()
		if !errors.Is(err, errBadArgs) && !errors.Is(err, ErrBadRequest) {
			msg = e.public(err, args.Symbol, "run_id", r.ID, "tool", t.name).Error()
		}
		return errorResult(msg), msg
	}
	return boundResult(v, max), ""
}

func errorResult(msg string) string {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return string(b)
}

// boundResult marshals v within max bytes: a list that does not fit loses
// rows from the end (and says how many); anything else is cut and marked.
func boundResult(v any, max int) string {
	b, err := json.Marshal(v)
	if err != nil {
		return errorResult("the result could not be encoded")
	}
	if len(b) <= max {
		return string(b)
	}
	if rows, ok := v.(scanResult); ok {
		for len(rows.Rows) > 1 {
			rows.Rows = rows.Rows[:len(rows.Rows)-1]
			rows.Omitted++
			if b, _ = json.Marshal(rows); len(b) <= max {
				return string(b)
			}
		}
	}
	cut, _ := json.Marshal(map[string]any{"truncated": true, "note": fmt.Sprintf("result cut to %d bytes", max), "partial": cutText(string(b), int64(max)-80)})
	if len(cut) > max {
		return errorResult("the result is too long to return")
	}
	return string(cut)
}

// round2 keeps two decimals: what a reader and the grounding check compare.
func round2(v float64) float64 { return math.Round(v*100) / 100 }

func val2(v market.Value) *float64 {
	if !v.OK || math.IsNaN(v.V) || math.IsInf(v.V, 0) {
		return nil
	}
	x := round2(v.V)
	return &x
}

func priceOf(v market.Value, decimals int) *float64 {
	if !v.OK {
		return nil
	}
	p := math.Pow(10, float64(decimals))
	x := math.Round(v.V*p) / p
	return &x
}

// fetchOne fetches a symbol with the history its indicators need.
func (e *Engine) fetchOne(ctx context.Context, symbol string, period time.Duration) (market.Series, market.Indicators, error) {
	s, err := e.Market.History(ctx, symbol, period+indicatorLookback)
	if err != nil {
		return s, market.Indicators{}, err
	}
	return s, market.Compute(s, period), nil
}

func periodOf(name, def string) (string, time.Duration) {
	if name == "" {
		name = def
	}
	return name, periods[name]
}

type priceResult struct {
	Symbol      string   `json:"symbol"`
	AsOf        string   `json:"as_of"`
	Currency    string   `json:"currency,omitempty"`
	Source      string   `json:"source"`
	Synthetic   bool     `json:"synthetic,omitempty"`
	Close       float64  `json:"close"`
	Period      string   `json:"period"`
	From        string   `json:"period_from"`
	ReturnPct   *float64 `json:"period_return_pct"`
	High        *float64 `json:"period_high"`
	Low         *float64 `json:"period_low"`
	FromHigh52w *float64 `json:"from_52w_high_pct"`
	FromLow52w  *float64 `json:"from_52w_low_pct"`
	Vol20       *float64 `json:"volatility_20d_annualised_pct"`
	MaxDD       *float64 `json:"max_drawdown_pct"`
	Warnings    []string `json:"warnings,omitempty"`
}

func toolPriceSummary(ctx context.Context, e *Engine, r Run, a toolArgs) (any, error) {
	name, period := periodOf(a.Period, "6m")
	s, ind, err := e.fetchOne(ctx, a.Symbol, period)
	if err != nil {
		return nil, err
	}
	out := priceResult{Symbol: a.Symbol, AsOf: date(ind.AsOf), Currency: ind.Currency, Source: s.Source, Synthetic: s.Synthetic,
		Close: *priceOf(market.Known(ind.Close), ind.Decimals), Period: name, FromHigh52w: val2(ind.FromHigh52w),
		FromLow52w: val2(ind.FromLow52w), Vol20: val2(ind.Volatility20), MaxDD: val2(ind.MaxDrawdown), Warnings: warningsOf(ind, e.now())}
	from := ind.AsOf.Add(-period)
	var first *market.Bar
	hi, lo := math.Inf(-1), math.Inf(1)
	for i := range s.Bars {
		b := s.Bars[i]
		if b.Date.Before(from) {
			continue
		}
		if first == nil {
			first = &s.Bars[i]
		}
		hi, lo = math.Max(hi, b.High), math.Min(lo, b.Low)
	}
	if first != nil && first.Close > 0 {
		out.From = date(first.Date)
		out.ReturnPct = val2(market.Known(market.PercentChange(first.Close, ind.Close)))
		out.High, out.Low = priceOf(market.Known(hi), ind.Decimals), priceOf(market.Known(lo), ind.Decimals)
	}
	return out, nil
}

type indicatorResult struct {
	Symbol      string   `json:"symbol"`
	AsOf        string   `json:"as_of"`
	Close       float64  `json:"close"`
	RSI14       *float64 `json:"rsi14"`
	SMA20       *float64 `json:"sma20"`
	SMA50       *float64 `json:"sma50"`
	SMA200      *float64 `json:"sma200"`
	DistSMA50   *float64 `json:"dist_sma50_pct"`
	DistSMA200  *float64 `json:"dist_sma200_pct"`
	MACDHist    *float64 `json:"macd_hist"`
	ATR14       *float64 `json:"atr14"`
	ATRPct      *float64 `json:"atr_pct"`
	PercentB    *float64 `json:"bollinger_pct_b"`
	WeeklyTrend string   `json:"weekly_trend,omitempty"`
	WeeklyRSI   *float64 `json:"weekly_rsi14"`
	Warnings    []string `json:"warnings,omitempty"`
}

func toolIndicators(ctx context.Context, e *Engine, r Run, a toolArgs) (any, error) {
	s, ind, err := e.fetchOne(ctx, a.Symbol, periods["1y"])
	if err != nil {
		return nil, err
	}
	cx := market.ComputeContext(s, ind, nil)
	d := ind.Decimals
	return indicatorResult{Symbol: a.Symbol, AsOf: date(ind.AsOf), Close: *priceOf(market.Known(ind.Close), d),
		RSI14: val2(ind.RSI14), SMA20: priceOf(ind.SMA20, d), SMA50: priceOf(ind.SMA50, d), SMA200: priceOf(ind.SMA200, d),
		DistSMA50: val2(cx.DistSMA50), DistSMA200: val2(cx.DistSMA200), MACDHist: priceOf(ind.MACDHist, d),
		ATR14: priceOf(ind.ATR14, d), ATRPct: val2(cx.ATRPct), PercentB: val2(cx.PercentB),
		WeeklyTrend: cx.WeeklyTrend, WeeklyRSI: val2(cx.WeeklyRSI14), Warnings: warningsOf(ind, e.now())}, nil
}

type relativeRow struct {
	Symbol    string   `json:"symbol"`
	AsOf      string   `json:"as_of,omitempty"`
	ReturnPct *float64 `json:"return_pct,omitempty"`
	ExcessPts *float64 `json:"excess_pts,omitempty"`
	Beta      *float64 `json:"beta,omitempty"`
	Corr      *float64 `json:"correlation,omitempty"`
	Error     string   `json:"error,omitempty"`
}

type relativeResult struct {
	Benchmark       string        `json:"benchmark"`
	BenchmarkReturn *float64      `json:"benchmark_return_pct"`
	Period          string        `json:"period"`
	Rows            []relativeRow `json:"rows"`
}

// periodReturn is the close-to-close return from the last bar on or
// before the period's start to the last bar, and that start's date.
func periodReturn(s market.Series, period time.Duration) (*float64, time.Time) {
	if len(s.Bars) < 2 {
		return nil, time.Time{}
	}
	last := s.Bars[len(s.Bars)-1]
	from := last.Date.Add(-period)
	var start *market.Bar
	for i := range s.Bars {
		if s.Bars[i].Date.After(from) {
			break
		}
		start = &s.Bars[i]
	}
	if start == nil || start.Close <= 0 {
		return nil, time.Time{}
	}
	return val2(market.Known(market.PercentChange(start.Close, last.Close))), start.Date
}

func toolRelative(ctx context.Context, e *Engine, r Run, a toolArgs) (any, error) {
	name, period := periodOf(a.Period, "3m")
	series, errs := market.FetchAll(ctx, e.Market, a.Symbols, period+indicatorLookback)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	bench := a.Benchmark
	if bench == "" {
		class := market.Equity
		for _, s := range series {
			class = s.AssetClass()
			break
		}
		bench = e.benchmarkFor(class)
	}
	out := relativeResult{Benchmark: bench, Period: name}
	var bs *market.Series
	if bench != "" {
		b, err := e.Market.History(ctx, bench, period+indicatorLookback)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			out.Benchmark = bench + " (unavailable: " + FailureClass(err, bench) + ")"
		} else {
			bs = &b
			out.BenchmarkReturn, _ = periodReturn(b, period)
		}
	}
	for _, sym := range a.Symbols {
		row := relativeRow{Symbol: sym}
		s, ok := series[sym]
		if !ok {
			row.Error = FailureClass(errs[sym], sym)
			out.Rows = append(out.Rows, row)
			continue
		}
		row.AsOf = date(s.AsOf())
		row.ReturnPct, _ = periodReturn(s, period)
		if bs != nil && row.ReturnPct != nil && out.BenchmarkReturn != nil {
			x := round2(*row.ReturnPct - *out.BenchmarkReturn)
			row.ExcessPts = &x
		}
		if bs != nil {
			beta, corr := market.BetaCorrelation(s.Bars, bs.Bars, market.RelWindow)
			row.Beta, row.Corr = val2(beta), val2(corr)
		}
		out.Rows = append(out.Rows, row)
	}
	return out, nil
}

type scanRow struct {
	Rank     int      `json:"rank"`
	Symbol   string   `json:"symbol"`
	Score    float64  `json:"score"`
	Signals  []string `json:"signals,omitempty"`
	Close    string   `json:"close,omitempty"`
	Return1M string   `json:"return_1m,omitempty"`
	RSI14    string   `json:"rsi14,omitempty"`
	Note     string   `json:"note,omitempty"`
}

type scanResult struct {
	Watchlist string    `json:"watchlist"`
	AsOf      string    `json:"as_of,omitempty"`
	Rows      []scanRow `json:"rows"`
	Omitted   int       `json:"rows_omitted,omitempty"`
}

func toolScan(ctx context.Context, e *Engine, r Run, a toolArgs) (any, error) {
	list, err := e.resolveWatchlist(ctx, r.AccountID, strings.ToLower(strings.TrimSpace(a.Watchlist)))
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("%w: watchlist %q is empty", ErrBadRequest, a.Watchlist)
	}
	plan := Plans[Quick]
	series, errs := market.FetchAll(ctx, e.Market, list, plan.Lookback)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	failed, ind := map[string]string{}, map[string]market.Indicators{}
	for s, err := range errs {
		failed[s] = FailureClass(err, s)
	}
	for s, ser := range series {
		ind[s] = market.Compute(ser, plan.Window)
	}
	rows := scanTable(list, series, ind, failed, e.now())
	out := scanResult{Watchlist: a.Watchlist}
	for i, row := range rows {
		out.Rows = append(out.Rows, scanRow{Rank: i + 1, Symbol: row.Symbol, Score: round2(row.Score), Signals: row.Signals,
			Close: row.Close, Return1M: row.Return1M, RSI14: row.RSI14, Note: row.Why})
		if row.AsOf > out.AsOf {
			out.AsOf = row.AsOf
		}
	}
	return out, nil
}

type chartResult struct {
	Chart    string   `json:"chart"`
	Symbols  []string `json:"symbols"`
	Period   string   `json:"period"`
	Failed   []string `json:"failed,omitempty"`
	Attached bool     `json:"attached_to_answer"`
}

func toolChart(ctx context.Context, e *Engine, r Run, a toolArgs) (any, error) {
	name, period := periodOf(a.Period, "6m")
	series, errs := market.FetchAll(ctx, e.Market, a.Symbols, period+indicatorLookback)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var ok []market.Series
	out := chartResult{Period: name}
	for _, s := range a.Symbols {
		if ser, found := series[s]; found {
			ok = append(ok, ser)
			out.Symbols = append(out.Symbols, s)
		} else {
			out.Failed = append(out.Failed, s+": "+FailureClass(errs[s], s))
		}
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("%w: no data for any of %s", ErrBadRequest, strings.Join(a.Symbols, ", "))
	}
	// Drawn now (and cached), so a failure is the model's to read; the
	// answer attaches the picture of the run's last chart call.
	if _, err := e.charts.Chart(ok, market.ChartOptions{Window: period}); err != nil {
		return nil, err
	}
	out.Chart, out.Attached = "drawn", true
	return out, nil
}

// toolLabel is what a reader sees for a call: "indicators for AMD".
func toolLabel(name, raw string) string {
	var a toolArgs
	_ = json.Unmarshal([]byte(raw), &a)
	syms := strings.Join(a.Symbols, ", ")
	switch name {
	case "price_summary":
		return "price summary of " + orQ(a.Symbol)
	case "indicators":
		return "indicators for " + orQ(a.Symbol)
	case "relative_performance":
		b := a.Benchmark
		if b == "" {
			b = "the benchmark"
		}
		return "relative performance of " + orQ(syms) + " vs " + b
	case "watchlist_scan":
		if a.Watchlist == "" {
			return "scan of ?"
		}
		return "scan of " + clipRunes(strings.ToLower(a.Watchlist), 40)
	case "chart":
		return "chart of " + orQ(syms)
	}
	return "unknown tool " + clipRunes(name, 24)
}

func orQ(s string) string {
	if s == "" {
		return "?"
	}
	return clipRunes(strings.ToUpper(s), 60)
}

// agentData joins every tool result of a run: what its answer is checked
// against (CheckGrounding).
func agentData(a *AgentState) string {
	var b bytes.Buffer
	for _, s := range a.Steps {
		if s.Kind == StepTool && s.Error == "" {
			b.WriteString(s.Result)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// stepCost prices one model step at its route's price.
func stepCost(r Run, route string, in, out int64) billing.Money {
	return r.priceOf(route).Cost(in, out)
}
