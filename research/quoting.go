package research

import (
	"context"
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

// Quote builds and stores the preview of a request: it resolves the symbols
// against market data, sizes every prompt for real, prices the run on the
// chosen route and reads the paying bucket. Bad requests fail here, before
// any money is held, with ErrBadRequest or ErrNoRoute.
func (e *Engine) Quote(ctx context.Context, req Request) (Quote, error) {
	return e.QuoteWithID(ctx, req, newID("q"))
}

// QuoteWithID is Quote with a caller-chosen id (a schedule's fire derives
// one, so a retried fire finds its quote instead of making a second).
func (e *Engine) QuoteWithID(ctx context.Context, req Request, id string) (Quote, error) {
	if req.Depth == "" {
		req.Depth = Quick
	}
	if err := req.Validate(); err != nil {
		return Quote{}, err
	}
	plan := Plans[req.Depth]
	model := req.Model
	if model == "" {
		model = e.Catalog.DefaultModel
	}
	chain, err := e.Catalog.Chain(model, req.RouteKind, req.Consent)
	if err != nil {
		return Quote{}, err
	}
	acc, err := e.Ledger.EnsureAccount(ctx, req.Owner)
	if err != nil {
		return Quote{}, err
	}
	in, err := e.gather(ctx, acc, req, plan)
	if err != nil {
		return Quote{}, err
	}
	bal, err := e.Ledger.Balances(ctx, acc)
	if err != nil {
		return Quote{}, err
	}
	route := chain[0]
	q := Quote{
		ID: id, Request: req, AccountID: acc, Status: QuoteOpen,
		RouteID: route.ID, Model: route.Model, RouteKind: route.Kind, KeyMasked: llm.MaskKey(route.APIKey),
		Offline: route.BaseURL == OfflineBaseURL, Price: route.Price, Bucket: route.Bucket(),
		Symbols: in.symbols, SymbolNotes: in.notes, Scan: in.scan, DataSource: e.Market.Name(), Synthetic: e.Market.Synthetic(),
		CreatedAt: e.now(),
	}
	if q.Offline {
		q.KeyMasked = "none needed (offline analyst)"
	}
	q.Stages = plan.Stages(in.symbols)
	if req.Depth == Agent {
		if err := e.priceAgent(ctx, &q, chain, in); err != nil {
			return Quote{}, err
		}
	}
	priors := int64(0) // earlier outputs counted into later prompts at their limit
	for i, st := range q.Stages {
		if st.Kind != StageLLM {
			continue
		}
		q.Calls++
		// Earlier model outputs feed the synthesis: count them at their limit.
		prior := int64(0)
		if usesPrior(st) {
			prior = int64(plan.OutputLimit) * int64(countLLM(q.Stages[:i]))
		}
		n := llm.CountPromptTokens(buildPrompt(st, in.data, plan.OutputLimit).Messages)
		// The run refetches its data, which may have moved on a little
		// (a new bar, a signal that fired): every call is reserved against
		// the hold before it is made, so the quote leaves that room.
		q.TokensIn += n + promptMargin(n) + prior
		priors += prior
	}
	if q.Agent == nil {
		q.OutHigh = int64(q.Calls * plan.OutputLimit)
		// The static low end: earlier outputs shorter than their limit feed the
		// synthesis fewer tokens, and a model may write a twentieth of its limit.
		q.OutLow = q.OutHigh * 5 / 100
		q.Intensity = intensity(q.TokensIn + q.OutHigh)
		q.CostLow = route.Price.Cost(q.TokensIn-priors, q.OutLow)
		for _, r := range chain {
			if r.Bucket() == q.Bucket {
				q.CostHigh = max(q.CostHigh, r.Price.Cost(q.TokensIn, q.OutHigh))
			}
		}
		q.Hold = q.CostHigh
	}
	if !req.Consent { // would consent add a route? (a consented chain shows it)
		if all, err := e.Catalog.Chain(model, req.RouteKind, true); err == nil {
			for _, r := range all {
				q.OtherBucketRoutes = q.OtherBucketRoutes || r.Bucket() != q.Bucket
			}
		}
	}
	chain = e.quoteFallback(&q, chain, bal)
	if q.Agent != nil && q.FallbackHold > q.Agent.Cap {
		q.FallbackHold = q.Agent.Cap // the cap bounds the other bucket's part too
	}
	for _, r := range chain[1:] {
		q.Fallbacks = append(q.Fallbacks, r.ID)
	}
	q.Available = bal[q.Bucket].Available
	q.AfterHold = q.Available - q.Hold
	if q.AfterHold < 0 {
		q.Shortfall = -q.AfterHold
	}
	q.Debt = bal.Debt()
	if sr, ok := e.Ledger.(SpendReader); ok {
		sp, err := sr.Spending(ctx, acc, e.SpendDefaults)
		if err != nil {
			return Quote{}, err
		}
		q.Spend = &sp
		q.OverLimit = overLimit(sp, q.Hold+q.FallbackHold)
	}
	q.RuntimeLow, q.RuntimeHigh = e.runtime(route, q, plan)
	// Runs like this one, when there are enough, say better than the static
	// estimate what it will use, cost and take.
	if c, ok := e.calibrate(ctx, route.ID, req.Depth, len(q.Symbols)); ok && q.Agent == nil {
		q.applyCalibration(c)
	}
	// Calls already waiting for the route's capacity go first: the runtime
	// includes the wait a call joining the line now would see.
	if w := e.Gate.Estimate(ctx, route, int64(plan.OutputLimit)+q.TokensIn/int64(max(q.Calls, 1))); w > 0 {
		q.QueueWait = w.Round(time.Second)
		q.RuntimeLow, q.RuntimeHigh = q.RuntimeLow+q.QueueWait, q.RuntimeHigh+q.QueueWait
	}
	q.RetryPolicy = "429, 5xx, timeouts and broken streams are retried up to 2 times per route with backoff, honouring Retry-After"
	q.FallbackPolicy = fallbackPolicy(chain, req.Consent)
	if q.FallbackNote != "" {
		if len(chain) == 1 {
			q.FallbackPolicy = q.FallbackNote
		} else {
			q.FallbackPolicy += "; " + q.FallbackNote
		}
	}
	q.FailedCost = 0 // failed attempts are never charged, and a run that ends failed costs nothing (settle)
	q.CancelPolicy = cancelPolicy(chain, plan.OutputLimit)
	q.CapPolicy = fmt.Sprintf("the hold is the most this run can cost. Each call's output stops at %d tokens, whatever the model does, "+
		"and each call is reserved against what is left of the hold before it is made; a call that would not fit is not made, "+
		"and the run ends partial with what was written, charged for that only (nothing if nothing was written)", plan.OutputLimit)
	q.TimeoutPolicy = fmt.Sprintf("a run still going after %s stops: the stages already written are delivered as a partial report "+
		"and charged, the stage in progress is not; with none written it costs nothing", roundRuntime(plan.RuntimeHigh))
	q.ReceiptWhere = "a receipt link in the final message, also shown by /receipt"
	if q.Agent != nil {
		q.agentPolicies()
		q.ReceiptWhere += "; it lists every step (tool or model call, tokens, cost, time)"
	}
	if quoteTTL := e.QuoteTTL; quoteTTL > 0 {
		q.ExpiresAt = q.CreatedAt.Add(quoteTTL)
	} else {
		q.ExpiresAt = q.CreatedAt.Add(10 * time.Minute)
	}
	if err := e.Store.SaveQuote(ctx, q); err != nil {
		return Quote{}, err
	}
	return q, nil
}

// cancelPolicy is the quote's cancel line: closing the stream stops the
// provider's billing on most routes, so a cancel pays for what was
// delivered; a route whose provider bills the whole response after a
// disconnect is named, with what a cancel mid-call costs there.
func cancelPolicy(chain []llm.Route, outputLimit int) string {
	var billing []string
	for _, r := range chain {
		if r.BillsAfterClose {
			billing = append(billing, r.ID)
		}
	}
	switch {
	case len(billing) == 0:
		return "cancel any time: closing the stream stops the provider's billing on this route, so you pay for the prompt and the tokens delivered so far; the rest of the hold is released"
	case len(billing) == len(chain):
		return fmt.Sprintf("cancel any time, but %s bills the whole response even after the stream is closed: a cancel mid-call is charged as it bills, "+
			"the call's prompt and its full output limit (%d tokens); calls already finished as used; the rest of the hold is released", strings.Join(billing, ", "), outputLimit)
	}
	return fmt.Sprintf("cancel any time: you pay for the prompt and the tokens delivered so far, except on %s, which bills the whole response even after the stream is closed: "+
		"a cancel mid-call there is charged as it bills, the call's prompt and its full output limit (%d tokens); the rest of the hold is released", strings.Join(billing, ", "), outputLimit)
}

// roundRuntime prints a duration in whole minutes (or seconds under one).
func roundRuntime(d time.Duration) string {
	if d >= time.Minute {
		return fmt.Sprintf("%d min", int(d.Round(time.Minute).Minutes()))
	}
	return d.Round(time.Second).String()
}

// promptMargin is the room a quote leaves for a call's prompt of n tokens to
// grow by the time the run makes it: a sixteenth, and at least 32 tokens.
func promptMargin(n int64) int64 { return max(n/16, 32) }

func countLLM(st []Stage) int {
	n := 0
	for _, s := range st {
		if s.Kind == StageLLM {
			n++
		}
	}
	return n
}

// quoteFallback prices the other-bucket part of a consented chain: that
// bucket pays those routes' tokens from a second hold, the top of their cost
// range. When that bucket cannot cover it, the fallback is left out of the
// chain and the quote says why. It returns the chain the run will use.
func (e *Engine) quoteFallback(q *Quote, chain []llm.Route, bal map[billing.Bucket]billing.Balance) []llm.Route {
	var same []llm.Route
	var need billing.Money
	other := billing.Bucket("")
	for _, r := range chain {
		if r.Bucket() == q.Bucket {
			same = append(same, r)
			continue
		}
		other = r.Bucket()
		need = max(need, r.Price.Cost(q.TokensIn, q.OutHigh))
	}
	if other == "" {
		return chain
	}
	avail := bal[other].Available
	if avail < need {
		q.FallbackNote = fmt.Sprintf("other-bucket fallback unavailable: it needs up to %s held from your %s, which has %s", need, other, avail)
		return same
	}
	q.FallbackBucket, q.FallbackHold, q.FallbackAvailable = other, need, avail
	return chain
}

func fallbackPolicy(chain []llm.Route, consent bool) string {
	if len(chain) == 1 {
		if consent {
			return "no other route serves this model"
		}
		return "no fallback route in this bucket (other bucket only with your consent)"
	}
	var same, other []string
	for _, r := range chain[1:] {
		if r.Bucket() == chain[0].Bucket() {
			same = append(same, r.ID)
		} else {
			other = append(other, r.ID)
		}
	}
	var parts []string
	if len(same) > 0 {
		parts = append(parts, "falls back to "+strings.Join(same, ", ")+" (same bucket)")
	}
	if len(other) > 0 {
		parts = append(parts, "then, with your consent, to "+strings.Join(other, ", ")+" (other bucket: it pays those tokens from its own hold, with its own receipt)")
	}
	return strings.Join(parts, "; ")
}

// runOverhead is what a run spends besides its model calls: market data,
// indicators, the store's writes and the settle. The top of a runtime
// estimated from the calls alone adds it (issue 15: estimates from token
// rates alone came out below most runs before a route's runs calibrated
// them).
const runOverhead = time.Second

// runtime estimates the run's duration from the route's recent health when
// known, else from the plan.
func (e *Engine) runtime(route llm.Route, q Quote, plan Plan) (time.Duration, time.Duration) {
	if q.Offline {
		if a, ok := e.Offline.(*OfflineAnalyst); ok && a.Pace > 0 {
			return time.Duration(q.OutLow) * a.Pace, time.Duration(q.OutHigh)*a.Pace + runOverhead
		}
	}
	if e.Health != nil {
		st := e.Health.Stats(route.ID)
		if st.Samples > 0 && st.TokensPerSecond > 0 {
			per := func(out int64) time.Duration {
				return time.Duration(q.Calls)*st.P50FirstToken + time.Duration(float64(out)/st.TokensPerSecond*float64(time.Second))
			}
			return per(q.OutLow), per(q.OutHigh) + runOverhead
		}
	}
	return plan.RuntimeLow, plan.RuntimeHigh
}

// gathered is the data a quote or a run writes from.
type gathered struct {
	symbols []string
	notes   []string
	series  map[string]market.Series
	ind     map[string]market.Indicators
	cx      map[string]market.Context
	failed  map[string]string
	// benchErr says why relative strength is missing, when a benchmark could not be fetched.
	benchErr string
	// scan is a scan's ranked table of every watchlist symbol.
	scan []ScanRow
	data promptData
}

// DefaultBenchmark is what symbols are measured against when Engine.Benchmarks names nothing for their class.
const DefaultBenchmark = "SPY"

// benchmarkFor is the benchmark of an asset class: Engine.Benchmarks' entry (an empty one means none), else
// DefaultBenchmark.
func (e *Engine) benchmarkFor(c market.AssetClass) string {
	if b, ok := e.Benchmarks[c]; ok {
		return b
	}
	return DefaultBenchmark
}

// addContext fetches the benchmarks g's symbols are measured against and computes every symbol's Context.
// A benchmark that cannot be fetched leaves relative strength unknown, and says why, without failing the
// symbol.
func (e *Engine) addContext(ctx context.Context, g *gathered, plan Plan) {
	g.cx = map[string]market.Context{}
	var want []string
	for _, s := range g.symbols {
		if ser, ok := g.series[s]; ok {
			if b := e.benchmarkFor(ser.AssetClass()); b != "" && b != s && !slices.Contains(want, b) {
				want = append(want, b)
			}
		}
	}
	bench, errs := market.FetchAll(ctx, e.Market, want, plan.Lookback)
	for _, s := range g.symbols {
		ser, ok := g.series[s]
		if !ok {
			continue
		}
		var b *market.Series
		name := e.benchmarkFor(ser.AssetClass())
		if bs, ok := bench[name]; ok && name != s {
			b = &bs
		}
		cx := market.ComputeContext(ser, g.ind[s], b)
		if b == nil && name != "" && name != s {
			cx.Benchmark = name
			if err := errs[name]; err != nil {
				g.benchErr = fmt.Sprintf("benchmark %s unavailable: %v", name, err)
			}
		}
		g.cx[s] = cx
	}
}

// gather resolves a request's symbols and fetches and computes their data.
// In a quote (failHard) any failed symbol is a bad request; in a run a
// failed symbol is recorded and the rest go on.
func (e *Engine) gather(ctx context.Context, acc billing.AccountID, req Request, plan Plan) (gathered, error) {
	g := gathered{failed: map[string]string{}}
	switch {
	case req.Kind == KindAsk:
		return g, nil // the agent fetches what it needs with its tools
	case req.Kind == KindScan && req.Depth == Agent:
		// The agent scans with its tool; the list must exist now.
		if _, err := e.resolveWatchlist(ctx, acc, req.Watchlist); err != nil {
			return g, err
		}
		return g, nil
	}
	switch req.Kind {
	case KindResearch:
		for _, raw := range req.Symbols {
			s, err := market.NormalizeSymbol(raw)
			if err != nil {
				return g, fmt.Errorf("%w: %v", ErrBadRequest, err)
			}
			if !slices.Contains(g.symbols, s) {
				g.symbols = append(g.symbols, s)
			}
		}
	case KindScan:
		list, err := e.resolveWatchlist(ctx, acc, req.Watchlist)
		if err != nil {
			return g, err
		}
		if len(list) == 0 {
			return g, fmt.Errorf("%w: watchlist %q is empty", ErrBadRequest, req.Watchlist)
		}
		g.symbols = list
	}
	series, errs := market.FetchAll(ctx, e.Market, g.symbols, plan.Lookback)
	for _, s := range g.symbols {
		if err := errs[s]; err != nil {
			if req.Kind == KindResearch {
				if errors.Is(err, market.ErrUnknownSymbol) || errors.Is(err, market.ErrInvalidSymbol) {
					return g, fmt.Errorf("%w: unknown symbol %s", ErrBadRequest, s)
				}
				return g, fmt.Errorf("%w: %w", ErrDataUnavailable, e.public(err, s, "symbol", s, "provider", e.Market.Name()))
			}
			g.failed[s] = e.public(err, s, "symbol", s, "provider", e.Market.Name()).Error()
		}
	}
	g.series, g.ind = series, map[string]market.Indicators{}
	for s, ser := range series {
		g.ind[s] = market.Compute(ser, plan.Window)
	}
	if req.Kind == KindScan {
		// Every watchlist symbol gets a row; the strongest by signal score are written up, and the rows say
		// why. Stale and suspect series are in the table but not ranked by signals.
		g.scan = scanTable(g.symbols, series, g.ind, g.failed, e.now())
		var top []string
		for _, r := range g.scan {
			if r.Score > 0 && len(top) < plan.MaxSymbols {
				top = append(top, r.Symbol)
			}
		}
		bySignal := len(top) > 0
		if !bySignal {
			// No signal fired: cover the biggest one-month movers among the usable series, and say so.
			var fetched []string
			for _, s := range g.symbols {
				if ind, ok := g.ind[s]; ok && !ind.Suspect() && market.Staleness(ind, e.now()) == "" {
					fetched = append(fetched, s)
				}
			}
			slices.SortStableFunc(fetched, func(a, b string) int {
				return cmpAbs(g.ind[b].Return1M, g.ind[a].Return1M)
			})
			top = fetched[:min(len(fetched), plan.MaxSymbols)]
			if len(top) == 0 {
				return g, fmt.Errorf("%w: no usable market data for watchlist %q", ErrBadRequest, req.Watchlist)
			}
		}
		markPicked(g.scan, top, bySignal)
		g.notes = append(g.notes, scanPromptNotes(series, g.ind, top, g.scan)...)
		g.symbols = top
	}
	e.addContext(ctx, &g, plan)
	g.data = e.promptData(g, plan)
	return g, nil
}

func (e *Engine) promptData(g gathered, plan Plan) promptData {
	d := promptData{Source: e.Market.Name(), Synthetic: e.Market.Synthetic(), Depth: string(plan.Depth),
		Window: fmt.Sprintf("%d days", int(plan.Window.Hours()/24)), Signals: g.notes}
	now := e.now()
	dates := map[string]bool{}
	for _, s := range g.symbols {
		ind, ok := g.ind[s]
		if !ok {
			continue
		}
		d.Symbols = append(d.Symbols, symbolFor(ind, g.cx[s], now))
		dates[ind.AsOf.Format(time.DateOnly)] = true
	}
	// One as-of only when every symbol shares it: the latest date across symbols would date a crypto
	// pair's or an old file's figures wrongly.
	d.AsOf = "per symbol (see each symbol's as_of)"
	for k := range dates {
		if len(dates) == 1 {
			d.AsOf = k
		}
	}
	if len(g.failed) > 0 {
		d.Failed = g.failed
	}
	return d
}

// cmpAbs orders two returns by size, unknown ones last.
func cmpAbs(a, b market.Value) int {
	av, bv := -1.0, -1.0
	if a.OK {
		av = math.Abs(a.V)
	}
	if b.OK {
		bv = math.Abs(b.V)
	}
	switch {
	case av < bv:
		return -1
	case av > bv:
		return 1
	}
	return 0
}

// SpendReader is the part of a ledger that reports spend against limits;
// with it, quotes show "today: $0.40 of $2.00" and foresee a refusal.
type SpendReader interface {
	Spending(ctx context.Context, acc billing.AccountID, defaults billing.Limits) (billing.Spend, error)
}

// overLimit says which limit a hold of amount would pass, or "".
func overLimit(sp billing.Spend, amount billing.Money) string {
	switch {
	case sp.Limits.Daily > 0 && sp.Today+amount > sp.Limits.Daily:
		return fmt.Sprintf("this run holds up to %s and today's spend is %s of your %s daily limit", amount, sp.Today, sp.Limits.Daily)
	case sp.Limits.Monthly > 0 && sp.Month+amount > sp.Limits.Monthly:
		return fmt.Sprintf("this run holds up to %s and this month's spend is %s of your %s monthly limit", amount, sp.Month, sp.Limits.Monthly)
	}
	return ""
}
