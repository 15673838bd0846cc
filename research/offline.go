package research

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
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

// offlineText writes the section a task asks for, from the figures alone.
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
	if d.Synthetic {
		data = "synthetic demo " + data + " (not real prices)"
	}
	switch d.Task {
	case "bull", "bear", "risk":
		fmt.Fprintf(&b, "%s (rule-based, %s): ", map[string]string{"bull": "Bull case", "bear": "Bear case", "risk": "Risk review"}[d.Task], data)
		for _, s := range syms {
			var pts []string
			switch d.Task {
			case "bull":
				pts = bullPoints(s.Raw)
			case "bear":
				pts = bearPoints(s.Raw)
			default:
				pts = riskPoints(s.Raw)
			}
			if len(pts) == 0 {
				pts = []string{"nothing stands out in the figures"}
			}
			fmt.Fprintf(&b, "%s: %s. ", s.Symbol, strings.Join(pts, "; "))
		}
	case "synthesis":
		fmt.Fprintf(&b, "Synthesis (rule-based, %s). ", data)
		ranked := append([]symbolData(nil), syms...)
		sort.SliceStable(ranked, func(i, j int) bool { return val(ranked[i].Raw.Return3M) > val(ranked[j].Raw.Return3M) })
		for i, s := range ranked {
			fmt.Fprintf(&b, "%d. %s: %s, %d bull and %d bear points. ", i+1, s.Symbol, trend(s.Raw), len(bullPoints(s.Raw)), len(bearPoints(s.Raw)))
		}
		if len(d.Failed) > 0 {
			fmt.Fprintf(&b, "Missing: %d symbol(s) could not be analysed. ", len(d.Failed))
		}
		b.WriteString("The ranking follows 3-month returns; momentum can reverse, so weigh the risks above.")
	default: // report, analysis
		fmt.Fprintf(&b, "Rule-based analysis of %s. ", data)
		for _, s := range syms {
			r := s.Raw
			fmt.Fprintf(&b, "%s closed at %.2f: %s. ", s.Symbol, r.Close, trend(r))
			if r.RSI14 != nil {
				fmt.Fprintf(&b, "RSI 14 = %.1f (%s). ", *r.RSI14, rsiWord(*r.RSI14))
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

func val(p *float64) float64 {
	if p == nil {
		return -1e9
	}
	return *p
}

func trend(r rawFigs) string {
	switch {
	case r.SMA50 == nil || r.SMA200 == nil:
		return "trend unclear (not enough history for SMA 50/200)"
	case r.Close > *r.SMA50 && *r.SMA50 > *r.SMA200:
		return fmt.Sprintf("uptrend (close above SMA 50 = %.2f, SMA 50 above SMA 200 = %.2f)", *r.SMA50, *r.SMA200)
	case r.Close < *r.SMA50 && *r.SMA50 < *r.SMA200:
		return fmt.Sprintf("downtrend (close below SMA 50 = %.2f, SMA 50 below SMA 200 = %.2f)", *r.SMA50, *r.SMA200)
	default:
		return fmt.Sprintf("mixed trend (SMA 50 = %.2f, SMA 200 = %.2f)", *r.SMA50, *r.SMA200)
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

func bullPoints(r rawFigs) []string {
	var out []string
	if r.SMA200 != nil && r.Close > *r.SMA200 {
		out = append(out, fmt.Sprintf("price above SMA 200 (%.2f)", *r.SMA200))
	}
	if r.MACDHist != nil && *r.MACDHist > 0 {
		out = append(out, fmt.Sprintf("MACD histogram positive (%.2f)", *r.MACDHist))
	}
	if r.Return3M != nil && *r.Return3M > 0 {
		out = append(out, fmt.Sprintf("3-month return %+.1f%%", *r.Return3M))
	}
	if r.RSI14 != nil && *r.RSI14 < 30 {
		out = append(out, fmt.Sprintf("RSI %.1f oversold, a rebound setup", *r.RSI14))
	}
	return out
}

func bearPoints(r rawFigs) []string {
	var out []string
	if r.SMA200 != nil && r.Close < *r.SMA200 {
		out = append(out, fmt.Sprintf("price below SMA 200 (%.2f)", *r.SMA200))
	}
	if r.MACDHist != nil && *r.MACDHist < 0 {
		out = append(out, fmt.Sprintf("MACD histogram negative (%.2f)", *r.MACDHist))
	}
	if r.Return3M != nil && *r.Return3M < 0 {
		out = append(out, fmt.Sprintf("3-month return %+.1f%%", *r.Return3M))
	}
	if r.RSI14 != nil && *r.RSI14 > 70 {
		out = append(out, fmt.Sprintf("RSI %.1f overbought", *r.RSI14))
	}
	return out
}

func riskPoints(r rawFigs) []string {
	var out []string
	if r.Vol20 != nil {
		out = append(out, fmt.Sprintf("20-day volatility %.1f%% annualised", *r.Vol20))
	}
	if r.MaxDD != nil {
		out = append(out, fmt.Sprintf("max drawdown in the window %.1f%%", *r.MaxDD))
	}
	if r.FromHigh52w != nil {
		out = append(out, fmt.Sprintf("%.1f%% from the 52-week high", *r.FromHigh52w))
	}
	if r.SMA200 == nil {
		out = append(out, "too little history for SMA 200")
	}
	return out
}
