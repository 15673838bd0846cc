package research

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/market"
)

// Writer streams one model call. llm.Client is the Writer for API routes;
// OfflineAnalyst is the Writer for the offline route.
type Writer interface {
	Stream(ctx context.Context, routes []llm.Route, req llm.Request, onDelta func(text string, outTokens int64)) (llm.Result, error)
}

var _ Writer = (*llm.Client)(nil)

// OfflineAnalyst is the rule-based model behind the offline route: it writes
// a deterministic text from the figures in the prompt's data block, with no
// network and no key. It streams word by word at Pace per token so progress,
// cancel and pause behave as with a real model, and counts what it emits.
type OfflineAnalyst struct {
	Pace time.Duration // per token; 0 = as fast as possible
}

// Stream implements Writer.
func (a *OfflineAnalyst) Stream(ctx context.Context, routes []llm.Route, req llm.Request, onDelta func(string, int64)) (res llm.Result, err error) {
	if len(req.Tools) > 0 {
		return a.agentStream(ctx, routes, req, onDelta)
	}
	start := time.Now()
	res = llm.Result{Attempts: 1}
	if len(routes) > 0 {
		res.Route = routes[0]
	}
	d, err := parseDataBlock(req)
	if err != nil {
		return res, err
	}
	text := offlineText(d)
	prompt := llm.CountPromptTokens(req.Messages)
	if req.Budget != nil {
		// Like an API call, the offline analyst writes only what the hold
		// can pay for.
		if err := req.Budget.Reserve(res.Route, prompt, int64(max(req.MaxTokens, 0))); err != nil {
			res.Attempts = 0
			return res, fmt.Errorf("%w: %w", llm.ErrOverBudget, err)
		}
		defer func() { req.Budget.Spent(res.Route, res.Usage) }()
	}
	var out strings.Builder
	var tokens int64
	words := strings.SplitAfter(text, " ")
	var timer *time.Timer
	if a.Pace > 0 {
		timer = time.NewTimer(a.Pace)
		defer timer.Stop()
	}
	for i, w := range words {
		n := llm.CountTokens(w)
		if req.MaxTokens > 0 && tokens+n > int64(req.MaxTokens) {
			break
		}
		if timer != nil {
			if i > 0 {
				timer.Reset(time.Duration(n) * a.Pace)
			}
			select {
			case <-ctx.Done():
				res.Text, res.Duration = out.String(), time.Since(start)
				res.Usage = llm.Usage{PromptTokens: prompt, CompletionTokens: tokens, PromptSource: billing.UsageProvider, CompletionSource: billing.UsageProvider}
				return res, context.Cause(ctx)
			case <-timer.C:
			}
		} else if err := ctx.Err(); err != nil {
			res.Text = out.String()
			res.Usage = llm.Usage{PromptTokens: prompt, CompletionTokens: tokens, PromptSource: billing.UsageProvider, CompletionSource: billing.UsageProvider}
			return res, context.Cause(ctx)
		}
		if i == 0 {
			res.FirstToken = time.Since(start)
		}
		out.WriteString(w)
		tokens += n
		if onDelta != nil {
			onDelta(w, tokens)
		}
	}
	res.Text, res.Duration = out.String(), time.Since(start)
	res.Usage = llm.Usage{PromptTokens: prompt, CompletionTokens: tokens, PromptSource: billing.UsageProvider, CompletionSource: billing.UsageProvider}
	return res, nil
}

// offlineText writes the section a task asks for, from the figures alone. It says which figures each point
// rests on, weighs risks by their level (a calm series gets no volatility warning), puts a symbol's data
// warnings first, and at deep depth keeps the stages apart: the per-symbol analysis reads trend, momentum
// and levels; the bull, bear and risk stages make their cases; the synthesis ranks and concludes, so no
// sentence is written twice.
func offlineText(d promptData) string {
	var b strings.Builder
	syms := d.Symbols
	if d.Focus != "" {
		syms = nil
		for _, s := range d.Symbols {
			if s.Symbol == d.Focus {
				syms = append(syms, s)
			}
		}
	}
	data := fmt.Sprintf("data from %s as of %s", d.Source, d.AsOf)
	if _, err := time.Parse(time.DateOnly, d.AsOf); err != nil {
		data = fmt.Sprintf("data from %s, each symbol as of its own last bar", d.Source)
	}
	if len(syms) == 1 {
		data = fmt.Sprintf("data from %s as of %s", d.Source, syms[0].AsOf)
	}
	if d.Synthetic {
		data = "synthetic demo " + data + " (not real prices)"
	}
	deep := d.Depth == string(Deep)
	switch d.Task {
	case "bull", "bear", "risk":
		fmt.Fprintf(&b, "%s (rule-based, %s): ", map[string]string{"bull": "Bull case", "bear": "Bear case", "risk": "Risk review"}[d.Task], data)
		for _, s := range syms {
			var pts []string
			switch {
			case d.Task != "risk" && s.Raw.Suspect:
				pts = []string{"left out: the figures span a suspect jump (see the data warning)"}
			case d.Task == "bull":
				pts = bullPoints(s.Raw)
			case d.Task == "bear":
				pts = bearPoints(s.Raw)
			default:
				pts = riskPoints(s.Raw)
				if len(s.Warnings) > 0 {
					pts = append([]string{"data: " + strings.Join(s.Warnings, "; ")}, pts...)
				}
			}
			if len(pts) == 0 {
				pts = []string{map[string]string{"bull": "no bullish figure stands out", "bear": "no bearish figure stands out", "risk": "no risk figure stands out"}[d.Task]}
			}
			fmt.Fprintf(&b, "%s: %s. ", s.Symbol, strings.Join(pts, "; "))
		}
	case "synthesis":
		fmt.Fprintf(&b, "Synthesis (rule-based, %s). ", data)
		ranked := append([]symbolData(nil), syms...)
		sort.SliceStable(ranked, func(i, j int) bool { return val(ranked[i].Raw.Return3M) > val(ranked[j].Raw.Return3M) })
		for i, s := range ranked {
			r := s.Raw
			fmt.Fprintf(&b, "%d. %s (3M %s): %s; %s. ", i+1, s.Symbol, signed(r.Return3M), trendWord(r), balance(r))
			if len(s.Warnings) > 0 {
				fmt.Fprintf(&b, "Its data has %d warning(s), so its place is uncertain. ", len(s.Warnings))
			}
		}
		if len(d.Failed) > 0 {
			fmt.Fprintf(&b, "Missing: %d symbol(s) could not be analysed. ", len(d.Failed))
		}
		b.WriteString("The ranking follows 3-month price returns; momentum can reverse, so weigh it against the risks.")
	default: // report, analysis
		fmt.Fprintf(&b, "Rule-based analysis of %s. ", data)
		for _, s := range syms {
			r := s.Raw
			if len(syms) > 1 {
				fmt.Fprintf(&b, "%s (as of %s): ", s.Symbol, s.AsOf)
			}
			for _, w := range s.Warnings {
				fmt.Fprintf(&b, "Data warning: %s. ", w)
			}
			fmt.Fprintf(&b, "%s closed at %s%s: %s. ", s.Symbol, px(r.Close, r), unit(r), trend(r))
			if r.RSI14 != nil {
				fmt.Fprintf(&b, "RSI 14 = %.1f (%s). ", *r.RSI14, rsiWord(*r.RSI14))
			}
			if sig := signalsFor(d.Signals, s.Symbol); len(sig) > 0 {
				fmt.Fprintf(&b, "Scan signals: %s. ", strings.Join(sig, "; "))
			}
			if deep && d.Task == "analysis" {
				// The deep run's bull, bear and risk stages make those cases; here only the levels.
				if lv := levelPoints(r); len(lv) > 0 {
					fmt.Fprintf(&b, "Levels: %s. ", strings.Join(lv, "; "))
				}
				continue
			}
			if r.Suspect {
				b.WriteString("Bull and bear points are left out: the figures span the suspect jump above. ")
				continue
			}
			if bp := bullPoints(r); len(bp) > 0 {
				fmt.Fprintf(&b, "Bull points: %s. ", strings.Join(bp, "; "))
			}
			if bp := bearPoints(r); len(bp) > 0 {
				fmt.Fprintf(&b, "Bear points: %s. ", strings.Join(bp, "; "))
			}
			if rp := riskPoints(r); len(rp) > 0 {
				fmt.Fprintf(&b, "Risks: %s. ", strings.Join(rp, "; "))
			}
		}
	}
	return strings.TrimSpace(b.String())
}

// px prints a price to the symbol's precision.
func px(v float64, r rawFigs) string { return market.FormatPrice(v, r.Decimals) }

func unit(r rawFigs) string {
	if r.Currency == "" {
		return ""
	}
	return " " + r.Currency
}

func signed(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", *p)
}

// signalsFor picks a symbol's scan signals out of the notes ("AAPL: RSI 14 is 88.7, above 70").
func signalsFor(notes []string, sym string) []string {
	var out []string
	for _, n := range notes {
		if rest, ok := strings.CutPrefix(n, sym+": "); ok {
			out = append(out, rest)
		}
	}
	return out
}

func val(p *float64) float64 {
	if p == nil {
		return -1e9
	}
	return *p
}

func trendWord(r rawFigs) string {
	switch {
	case r.SMA50 == nil || r.SMA200 == nil:
		return "trend unclear"
	case r.Close > *r.SMA50 && *r.SMA50 > *r.SMA200:
		return "uptrend"
	case r.Close < *r.SMA50 && *r.SMA50 < *r.SMA200:
		return "downtrend"
	}
	return "mixed trend"
}

// balance weighs a symbol's bull points against its bear points and its worst risk.
func balance(r rawFigs) string {
	bull, bear := len(bullPoints(r)), len(bearPoints(r))
	lean := "balanced"
	switch {
	case bull > bear:
		lean = "leans bullish"
	case bear > bull:
		lean = "leans bearish"
	}
	out := fmt.Sprintf("%s (%d bull and %d bear points)", lean, bull, bear)
	if rp := riskPoints(r); len(rp) > 0 && strings.HasPrefix(rp[0], "high") {
		out += ", with a " + rp[0]
	}
	return out
}

func trend(r rawFigs) string {
	switch {
	case r.SMA50 == nil || r.SMA200 == nil:
		return "trend unclear (not enough history for SMA 50/200)"
	case r.Close > *r.SMA50 && *r.SMA50 > *r.SMA200:
		return fmt.Sprintf("uptrend (close above SMA 50 = %s, SMA 50 above SMA 200 = %s)", px(*r.SMA50, r), px(*r.SMA200, r))
	case r.Close < *r.SMA50 && *r.SMA50 < *r.SMA200:
		return fmt.Sprintf("downtrend (close below SMA 50 = %s, SMA 50 below SMA 200 = %s)", px(*r.SMA50, r), px(*r.SMA200, r))
	default:
		return fmt.Sprintf("mixed trend (SMA 50 = %s, SMA 200 = %s)", px(*r.SMA50, r), px(*r.SMA200, r))
	}
}

func rsiWord(v float64) string {
	switch {
	case v > 70:
		return "overbought"
	case v < 30:
		return "oversold"
	}
	return "neutral"
}

// levelPoints are where the price stands against its averages, bands and its year's range.
func levelPoints(r rawFigs) []string {
	var out []string
	for _, m := range []struct {
		name     string
		dist, at *float64
	}{{"SMA 20", r.DistSMA20, r.SMA20}, {"SMA 50", r.DistSMA50, r.SMA50}, {"SMA 200", r.DistSMA200, r.SMA200}} {
		if m.dist != nil && m.at != nil {
			out = append(out, fmt.Sprintf("%+.1f%% from %s (%s)", *m.dist, m.name, px(*m.at, r)))
		}
	}
	if r.ATRSMA200 != nil {
		out = append(out, fmt.Sprintf("%+.1f ATR from SMA 200", *r.ATRSMA200))
	}
	if r.PercentB != nil {
		out = append(out, fmt.Sprintf("Bollinger %%B %.2f", *r.PercentB))
	}
	if r.FromHigh52w != nil && r.FromLow52w != nil {
		out = append(out, fmt.Sprintf("%+.1f%% from the 52-week high and %+.1f%% from the low", *r.FromHigh52w, *r.FromLow52w))
	}
	if r.WeeklyTrend != "" {
		out = append(out, "weekly trend "+r.WeeklyTrend)
	}
	return out
}

func bullPoints(r rawFigs) []string {
	var out []string
	if r.SMA200 != nil && r.Close > *r.SMA200 {
		out = append(out, fmt.Sprintf("price above SMA 200 (%s)", px(*r.SMA200, r)))
	}
	if r.MACDHist != nil && *r.MACDHist > 0 {
		out = append(out, fmt.Sprintf("MACD histogram positive (%s)", px(*r.MACDHist, r)))
	}
	if r.Return3M != nil && *r.Return3M > 0 {
		out = append(out, fmt.Sprintf("3-month price return %+.1f%%", *r.Return3M))
	}
	if r.RSI14 != nil && *r.RSI14 < 30 {
		out = append(out, fmt.Sprintf("RSI %.1f oversold, a rebound setup", *r.RSI14))
	}
	if r.Excess3M != nil && *r.Excess3M > 0 {
		out = append(out, fmt.Sprintf("beat %s by %.1f points over 3 months", r.Benchmark, *r.Excess3M))
	}
	if r.WeeklyTrend == "up" {
		out = append(out, "weekly trend up")
	}
	return out
}

func bearPoints(r rawFigs) []string {
	var out []string
	if r.SMA200 != nil && r.Close < *r.SMA200 {
		out = append(out, fmt.Sprintf("price below SMA 200 (%s)", px(*r.SMA200, r)))
	}
	if r.MACDHist != nil && *r.MACDHist < 0 {
		out = append(out, fmt.Sprintf("MACD histogram negative (%s)", px(*r.MACDHist, r)))
	}
	if r.Return3M != nil && *r.Return3M < 0 {
		out = append(out, fmt.Sprintf("3-month price return %+.1f%%", *r.Return3M))
	}
	if r.RSI14 != nil && *r.RSI14 > 70 {
		out = append(out, fmt.Sprintf("RSI %.1f overbought", *r.RSI14))
	}
	if r.Excess3M != nil && *r.Excess3M < 0 {
		out = append(out, fmt.Sprintf("lagged %s by %.1f points over 3 months", r.Benchmark, -*r.Excess3M))
	}
	if r.WeeklyTrend == "down" {
		out = append(out, "weekly trend down")
	}
	return out
}

// volBands are the annualised volatility levels, per asset class, above which volatility is moderate and high:
// a 30 % year is wild for a currency pair, ordinary for a stock, calm for a crypto asset.
var volBands = map[string][2]float64{"equity": {25, 45}, "crypto": {50, 90}, "fx": {8, 14}}

// riskPoints lists the risks that matter at their level, the worst first, each saying its level ("high",
// "moderate") and the figure behind it; a calm figure is not listed.
func riskPoints(r rawFigs) []string {
	type risk struct {
		rank int // 2 high, 1 moderate
		text string
	}
	var rs []risk
	add := func(rank int, format string, args ...any) {
		word := map[int]string{1: "moderate", 2: "high"}[rank]
		rs = append(rs, risk{rank, word + " " + fmt.Sprintf(format, args...)})
	}
	if r.Stale {
		add(2, "staleness: the figures describe a past date, not now")
	}
	if r.Vol20 != nil {
		bands, ok := volBands[r.Class]
		if !ok {
			bands = volBands["equity"]
		}
		switch {
		case *r.Vol20 >= bands[1]:
			add(2, "volatility: 20-day %.1f%% annualised (high for %s above %.0f%%)", *r.Vol20, orEquity(r.Class), bands[1])
		case *r.Vol20 >= bands[0]:
			add(1, "volatility: 20-day %.1f%% annualised (above %.0f%% for %s)", *r.Vol20, bands[0], orEquity(r.Class))
		}
	}
	if r.MaxDD != nil {
		switch {
		case *r.MaxDD <= -25:
			add(2, "drawdown: %.1f%% peak to trough in the window", *r.MaxDD)
		case *r.MaxDD <= -12:
			add(1, "drawdown: %.1f%% peak to trough in the window", *r.MaxDD)
		}
	}
	if r.VolPct != nil && *r.VolPct >= 80 {
		add(1, "volatility regime: 20-day volatility at the %.0fth percentile of its year", *r.VolPct)
	}
	if r.PercentB != nil && (*r.PercentB > 1 || *r.PercentB < 0) {
		add(1, "stretch: Bollinger %%B %.2f, outside the bands", *r.PercentB)
	}
	if r.ATRSMA200 != nil && math.Abs(*r.ATRSMA200) >= 8 {
		add(1, "extension: %+.1f ATR from SMA 200", *r.ATRSMA200)
	}
	if r.RSI14 != nil && *r.RSI14 > 80 {
		add(1, "reversal risk: RSI 14 = %.1f, stretched", *r.RSI14)
	}
	if r.FromHigh52w != nil && *r.FromHigh52w <= -30 {
		add(1, "damage: %.1f%% below the 52-week high", *r.FromHigh52w)
	}
	if r.SMA200 == nil {
		add(1, "blind spot: too little history for SMA 200")
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].rank > rs[j].rank })
	out := make([]string, len(rs))
	for i, x := range rs {
		out[i] = x.text
	}
	return out
}

func orEquity(c string) string {
	if c == "" {
		return "equity"
	}
	return c
}
