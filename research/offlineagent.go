package research

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/market"
)

// The offline analyst's agent mode: a deterministic planner that calls the
// same tools a model would, in the order a careful analyst would (a scan
// when a watchlist is asked about, then prices, indicators, relative
// performance and a chart), and answers from their results only, so its
// answers pass the grounding check by construction. It needs no key and no
// network, and streams and counts like a model, so the demo shows a full
// agent run with its steps, its cap and its ask-to-continue.

// agentStream answers one agent step.
func (a *OfflineAnalyst) agentStream(ctx context.Context, routes []llm.Route, req llm.Request, onDelta func(string, int64)) (res llm.Result, err error) {
	start := time.Now()
	res = llm.Result{Attempts: 1}
	if len(routes) > 0 {
		res.Route = routes[0]
	}
	prompt := llm.CountRequestTokens(req)
	if req.Budget != nil {
		if err := req.Budget.Reserve(res.Route, prompt, int64(max(req.MaxTokens, 0))); err != nil {
			res.Attempts = 0
			return res, fmt.Errorf("%w: %w", llm.ErrOverBudget, err)
		}
		defer func() { req.Budget.Spent(res.Route, res.Usage) }()
	}
	text, calls := offlinePlan(req)
	var tokens int64
	usage := func() llm.Usage {
		return llm.Usage{PromptTokens: prompt, CompletionTokens: tokens, PromptSource: billing.UsageProvider, CompletionSource: billing.UsageProvider}
	}
	wait := func(n int64) error {
		if a.Pace <= 0 {
			return ctx.Err()
		}
		t := time.NewTimer(time.Duration(n) * a.Pace)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
			return nil
		}
	}
	var out strings.Builder
	for i, w := range strings.SplitAfter(text, " ") {
		n := llm.CountTokens(w)
		if req.MaxTokens > 0 && tokens+n > int64(req.MaxTokens) {
			break
		}
		if err := wait(n); err != nil {
			res.Text, res.Usage, res.Duration = out.String(), usage(), time.Since(start)
			return res, err
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
	for _, c := range calls {
		n := llm.CountTokens(c.ID + c.Name + c.Arguments)
		if req.MaxTokens > 0 && tokens+n > int64(req.MaxTokens) {
			break
		}
		if err := wait(n); err != nil {
			res.Text, res.Usage, res.Duration = out.String(), usage(), time.Since(start)
			return res, err
		}
		res.ToolCalls = append(res.ToolCalls, c)
		tokens += n
		if onDelta != nil {
			onDelta("", tokens)
		}
	}
	res.Text, res.Usage, res.Duration = out.String(), usage(), time.Since(start)
	res.FinishReason = "stop"
	if len(res.ToolCalls) > 0 {
		res.FinishReason = "tool_calls"
	}
	return res, nil
}

// offlineSeen is what the conversation so far holds: the question, its
// context, and the tools' results by tool and symbol.
type offlineSeen struct {
	question string
	cx       agentContext
	prices   map[string]priceResult
	inds     map[string]indicatorResult
	rel      *relativeResult
	scan     *scanResult
	charted  bool
	failed   map[string]bool // "tool:SYMBOL" that came back with an error
	tried    map[string]bool // "tool:SYMBOL" asked for
}

func readConversation(req llm.Request) offlineSeen {
	s := offlineSeen{prices: map[string]priceResult{}, inds: map[string]indicatorResult{}, failed: map[string]bool{}, tried: map[string]bool{}}
	calls := map[string]llm.ToolCall{}
	for _, m := range req.Messages {
		switch m.Role {
		case llm.RoleUser:
			if q, cx, ok := parseFirst(m.Content); ok && s.question == "" {
				s.question, s.cx = q, cx
			}
		case llm.RoleAssistant:
			for _, c := range m.ToolCalls {
				calls[c.ID] = c
				s.tried[c.Name+":"+callKey(c)] = true
			}
		case llm.RoleTool:
			c := calls[m.ToolCallID]
			if strings.HasPrefix(m.Content, `{"error"`) {
				s.failed[c.Name+":"+callKey(c)] = true
				continue
			}
			switch c.Name {
			case "price_summary":
				var p priceResult
				if json.Unmarshal([]byte(m.Content), &p) == nil && p.Symbol != "" {
					s.prices[p.Symbol] = p
				}
			case "indicators":
				var p indicatorResult
				if json.Unmarshal([]byte(m.Content), &p) == nil && p.Symbol != "" {
					s.inds[p.Symbol] = p
				}
			case "relative_performance":
				var p relativeResult
				if json.Unmarshal([]byte(m.Content), &p) == nil {
					s.rel = &p
				}
			case "watchlist_scan":
				var p scanResult
				if json.Unmarshal([]byte(m.Content), &p) == nil {
					s.scan = &p
				}
			case "chart":
				s.charted = true
			}
		}
	}
	return s
}

func callKey(c llm.ToolCall) string {
	var a toolArgs
	_ = json.Unmarshal([]byte(c.Arguments), &a)
	if a.Symbol != "" {
		if n, err := market.NormalizeSymbol(a.Symbol); err == nil {
			return n
		}
		return a.Symbol
	}
	if a.Watchlist != "" {
		return a.Watchlist
	}
	return strings.Join(a.Symbols, ",")
}

var tickerRE = regexp.MustCompile(`\$?\b[A-Z][A-Z0-9]{0,5}(?:[-.=][A-Z0-9]{1,4})?\b`)

// notTickers are capitalised words a question uses that are not symbols.
var notTickers = map[string]bool{"I": true, "A": true, "AN": true, "AND": true, "OR": true, "THE": true, "IS": true, "IT": true, "OF": true,
	"ON": true, "IN": true, "TO": true, "VS": true, "RSI": true, "SMA": true, "EMA": true, "MACD": true, "ATR": true, "ETF": true, "ETFS": true,
	"USD": true, "EUR": true, "AI": true, "CEO": true, "IPO": true, "EPS": true, "PE": true, "YTD": true, "MY": true, "ME": true, "DO": true,
	"HOW": true, "WHAT": true, "WHY": true, "ARE": true, "BE": true, "US": true, "UK": true, "EU": true, "OK": true, "FX": true}

// questionSymbols are the tickers a question names, in order.
func questionSymbols(q string) []string {
	var out []string
	for _, w := range tickerRE.FindAllString(q, -1) {
		w = strings.TrimPrefix(w, "$")
		if notTickers[w] {
			continue
		}
		if s, err := market.NormalizeSymbol(w); err == nil && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// questionList is the watchlist a question asks about, if any.
func questionList(s offlineSeen) string {
	if s.cx.Watchlist != "" {
		return s.cx.Watchlist
	}
	low := strings.ToLower(s.question)
	for _, name := range s.cx.Watchlists {
		if strings.Contains(low, name) {
			return name
		}
	}
	for _, name := range s.cx.Watchlists {
		// "the other semis" names the semis list; "my watchlist" the first of the user's own.
		if stem := strings.TrimSuffix(name, "s"); len(stem) >= 4 && strings.Contains(low, stem) {
			return name
		}
	}
	if strings.Contains(low, "watchlist") && len(s.cx.Watchlists) > 0 {
		return s.cx.Watchlists[0]
	}
	return ""
}

// offlinePlan decides the next step: tool calls, or the answer.
func offlinePlan(req llm.Request) (string, []llm.ToolCall) {
	s := readConversation(req)
	final := req.ToolChoice == llm.ToolChoiceNone
	named := s.cx.Symbols
	if len(named) == 0 {
		named = questionSymbols(s.question)
	}
	list := questionList(s)
	limit := DefaultAgentPlan.MaxParallel
	var calls []llm.ToolCall
	call := func(name string, args any) {
		b, _ := json.Marshal(args)
		calls = append(calls, llm.ToolCall{ID: fmt.Sprintf("call_%s_%d", strings.ReplaceAll(name, "_", ""), len(req.Messages)*10+len(calls)), Name: name, Arguments: string(b)})
	}
	syms := slices.Clone(named)
	if s.scan != nil {
		for _, row := range s.scan.Rows {
			if len(syms) >= 3 || (len(named) > 0 && len(syms) >= len(named)+2) {
				break
			}
			if row.Close != "" && !slices.Contains(syms, row.Symbol) {
				syms = append(syms, row.Symbol)
			}
		}
	}
	syms = syms[:min(len(syms), limit)]
	if !final {
		switch {
		case list != "" && !s.tried["watchlist_scan:"+list]:
			call("watchlist_scan", map[string]string{"watchlist": list})
			for _, sym := range named[:min(len(named), limit-1)] {
				call("price_summary", map[string]string{"symbol": sym})
			}
		default:
			for _, sym := range syms {
				if !s.tried["price_summary:"+sym] && len(calls) < limit {
					call("price_summary", map[string]string{"symbol": sym})
				}
			}
			if len(calls) == 0 {
				for _, sym := range syms {
					if _, ok := s.prices[sym]; ok && !s.tried["indicators:"+sym] && len(calls) < limit {
						call("indicators", map[string]string{"symbol": sym})
					}
				}
			}
			var ok []string
			for _, sym := range syms {
				if _, found := s.prices[sym]; found {
					ok = append(ok, sym)
				}
			}
			if len(calls) == 0 && len(ok) > 0 && s.rel == nil && !s.tried["relative_performance:"+strings.Join(ok, ",")] {
				call("relative_performance", map[string]any{"symbols": ok})
			}
			if len(calls) == 0 || len(calls) == 1 && calls[0].Name == "relative_performance" {
				if len(ok) > 0 && !s.charted && !s.tried["chart:"+strings.Join(ok, ",")] {
					call("chart", map[string]any{"symbols": ok})
				}
			}
		}
		if len(calls) > 0 {
			return "", calls
		}
	}
	return offlineAnswer(s, syms, final), nil
}

// offlineAnswer writes the answer from the tools' results, quoting each
// figure as the tool gave it.
func offlineAnswer(s offlineSeen, syms []string, early bool) string {
	var b strings.Builder
	data := fmt.Sprintf("data from %s", s.cx.Source)
	if s.cx.Synthetic {
		data = "synthetic demo " + data + " (not real prices)"
	}
	fmt.Fprintf(&b, "Answer (rule-based offline agent, %s). ", data)
	if len(syms) == 0 {
		b.WriteString("The question names no symbol or watchlist I could look up, so there is nothing to answer from. Name a ticker (like NVDA) or a watchlist.")
		return b.String()
	}
	type row struct {
		sym    string
		rsi    *float64
		excess *float64
	}
	var rows []row
	for _, sym := range syms {
		p, hasP := s.prices[sym]
		ind, hasI := s.inds[sym]
		if !hasP && !hasI {
			continue
		}
		r := row{sym: sym}
		fmt.Fprintf(&b, "%s", sym)
		if hasP {
			fmt.Fprintf(&b, " closed at %g", p.Close)
			if p.Currency != "" {
				fmt.Fprintf(&b, " %s", p.Currency)
			}
			fmt.Fprintf(&b, " on %s", p.AsOf)
			if p.ReturnPct != nil {
				fmt.Fprintf(&b, ", %s over %s", signedG(*p.ReturnPct), p.Period)
			}
		}
		if hasI && ind.RSI14 != nil {
			r.rsi = ind.RSI14
			fmt.Fprintf(&b, "; RSI 14 = %g (%s)", *ind.RSI14, rsiWord(*ind.RSI14))
		}
		if hasI && ind.DistSMA200 != nil {
			fmt.Fprintf(&b, "; %g%% %s its SMA 200", abs(*ind.DistSMA200), map[bool]string{true: "above", false: "below"}[*ind.DistSMA200 >= 0])
		}
		if s.rel != nil {
			for _, rr := range s.rel.Rows {
				if rr.Symbol == sym && rr.ExcessPts != nil && s.rel.BenchmarkReturn != nil {
					r.excess = rr.ExcessPts
					fmt.Fprintf(&b, "; %s vs %s %s over %s (excess %s pts)", signedG(*rr.ReturnPct), s.rel.Benchmark, signedG(*s.rel.BenchmarkReturn), s.rel.Period, strings.TrimSuffix(signedG(*rr.ExcessPts), "%"))
				}
			}
		}
		if hasP && len(p.Warnings) > 0 {
			fmt.Fprintf(&b, " (data warning: %s)", strings.Join(p.Warnings, "; "))
		}
		b.WriteString(". ")
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		b.WriteString("None of the tools returned figures for " + strings.Join(syms, ", ") + ", so there is nothing to answer from.")
		return b.String()
	}
	byRSI := slices.Clone(rows)
	sort.SliceStable(byRSI, func(i, j int) bool { return ptrVal(byRSI[i].rsi) > ptrVal(byRSI[j].rsi) })
	if len(byRSI) > 1 && byRSI[0].rsi != nil {
		parts := []string{}
		for _, r := range byRSI {
			if r.rsi != nil {
				parts = append(parts, fmt.Sprintf("%s %g", r.sym, *r.rsi))
			}
		}
		fmt.Fprintf(&b, "By RSI 14 the order is %s. ", strings.Join(parts, ", "))
	}
	if first := byRSI[0]; first.rsi != nil {
		switch {
		case *first.rsi > 70:
			fmt.Fprintf(&b, "%s is overbought on RSI 14 (above seventy)", first.sym)
		case *first.rsi < 30:
			fmt.Fprintf(&b, "%s is oversold on RSI 14 (below thirty)", first.sym)
		default:
			fmt.Fprintf(&b, "None of them is overbought or oversold on RSI 14 (all between thirty and seventy)")
		}
		if len(byRSI) > 1 && *first.rsi > 70 {
			fmt.Fprintf(&b, ", the most stretched of the %d checked", len(byRSI))
		}
		b.WriteString(". ")
	}
	b.WriteString("Momentum readings can stay stretched for a while and reverse quickly; weigh them against the trend and the risks.")
	if early {
		var missing []string
		for _, sym := range syms {
			if _, ok := s.inds[sym]; !ok {
				missing = append(missing, "indicators for "+sym)
			}
		}
		if s.rel == nil {
			missing = append(missing, "relative performance")
		}
		if len(missing) > 0 {
			fmt.Fprintf(&b, " Not checked before the wrap-up: %s.", strings.Join(missing, ", "))
		}
	}
	return b.String()
}

func signedG(v float64) string {
	if v >= 0 {
		return fmt.Sprintf("+%g%%", v)
	}
	return fmt.Sprintf("%g%%", v)
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func ptrVal(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}
