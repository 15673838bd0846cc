package research

import (
	"context"
	"math"
	"time"
)

// Observation is what one settled run used against its quote's estimate:
// the quote's input count and output limit, the tokens the run used and how
// long it ran. Quotes on the same route, depth and symbol count are
// calibrated on the latest ones.
type Observation struct {
	RunID   string
	Route   string
	Depth   Depth
	Symbols int
	EstIn   int64 // the quote's counted prompt tokens (TokensIn)
	EstOut  int64 // the quote's output limit (OutHigh)
	UsedIn  int64
	UsedOut int64
	Runtime time.Duration
	Steps   int // an agent run's model calls (0 for the staged depths)
}

// ObservationStore keeps observations. A store without it leaves quotes on
// the static estimate.
type ObservationStore interface {
	// RecordObservation stores o; a run already recorded is left as it is.
	RecordObservation(ctx context.Context, o Observation) error
	// Observations returns up to limit observations for the key, newest first.
	Observations(ctx context.Context, route string, depth Depth, symbols, limit int) ([]Observation, error)
}

const (
	// calibrationWindow is how many recent runs a quote learns from.
	calibrationWindow = 50
	// calibrationMin is how many it needs before it trusts them over the
	// static estimate.
	calibrationMin = 3
	// calibrationMargin widens the observed range on each side: a new run
	// may land a little outside what the last ones did.
	calibrationMargin = 0.10
)

// calibration is the spread of used/estimated ratios and runtimes over
// recent runs like the one being quoted.
type calibration struct {
	n            int
	inLo, inHi   float64 // used input / counted input
	outLo, outHi float64 // used output / output limit
	rtLo, rtHi   time.Duration
}

// calibrate reads the observations for a quote's key; ok is false when there
// are too few (or no store keeps them).
func (e *Engine) calibrate(ctx context.Context, route string, depth Depth, symbols int) (calibration, bool) {
	os, ok := e.Store.(ObservationStore)
	if !ok {
		return calibration{}, false
	}
	obs, err := os.Observations(ctx, route, depth, symbols, calibrationWindow)
	if err != nil {
		e.log().Warn("read observations", "route", route, "err", err)
		return calibration{}, false
	}
	c := calibration{inLo: math.Inf(1), outLo: math.Inf(1), rtLo: time.Duration(math.MaxInt64)}
	for _, o := range obs {
		if o.EstIn <= 0 || o.EstOut <= 0 {
			continue
		}
		c.n++
		rin, rout := float64(o.UsedIn)/float64(o.EstIn), float64(o.UsedOut)/float64(o.EstOut)
		c.inLo, c.inHi = min(c.inLo, rin), max(c.inHi, rin)
		c.outLo, c.outHi = min(c.outLo, rout), max(c.outHi, rout)
		c.rtLo, c.rtHi = min(c.rtLo, o.Runtime), max(c.rtHi, o.Runtime)
	}
	return c, c.n >= calibrationMin
}

// applyCalibration narrows a quote's token, cost and runtime ranges to what
// runs like it used, widened by calibrationMargin. The hold stays the top of
// the static range (the most the run can cost within its output limit), so
// a run that uses more than the others is still covered.
func (q *Quote) applyCalibration(c calibration) {
	// Few runs show little of the spread: widen the observed range by its
	// own width times 2/(n-1) on each side (three runs triple it, fifty
	// add a twelfth), then by calibrationMargin.
	w := 2 / float64(c.n-1)
	widen := func(lo, hi float64) (float64, float64) {
		d := (hi - lo) * w
		return max(0, (lo-d)*(1-calibrationMargin)), (hi + d) * (1 + calibrationMargin)
	}
	inLo, inHi := widen(c.inLo, c.inHi)
	outLo, outHi := widen(c.outLo, c.outHi)
	rtLo, rtHi := widen(c.rtLo.Seconds(), c.rtHi.Seconds())
	q.Samples = c.n
	q.InLow = int64(math.Floor(float64(q.TokensIn) * inLo))
	q.InHigh = int64(math.Ceil(float64(q.TokensIn) * inHi))
	q.OutLow = int64(math.Floor(float64(q.OutHigh) * outLo))
	q.OutEst = min(q.OutHigh, int64(math.Ceil(float64(q.OutHigh)*outHi)))
	q.CostLow = q.Price.Cost(q.InLow, q.OutLow)
	q.CostHigh = min(q.Hold, max(q.CostLow, q.Price.Cost(q.InHigh, q.OutEst)))
	q.RuntimeLow = time.Duration(rtLo * float64(time.Second)).Round(time.Millisecond)
	q.RuntimeHigh = max(time.Duration(rtHi*float64(time.Second)).Round(time.Millisecond), q.RuntimeLow+time.Second)
}

// observe records what a succeeded run used against its quote, for the
// quotes after it. Only runs paid wholly on their first route count: a
// fallback's tokens are another route's.
func (e *Engine) observe(ctx context.Context, r Run) {
	os, ok := e.Store.(ObservationStore)
	if !ok || r.State != Succeeded || r.StartedAt.IsZero() || r.FinishedAt.IsZero() {
		return
	}
	for route := range r.ByRoute {
		if route != r.RouteID {
			return
		}
	}
	q, err := e.Store.Quote(ctx, r.QuoteID)
	if err != nil {
		return
	}
	o := Observation{RunID: r.ID, Route: r.RouteID, Depth: r.Request.Depth, Symbols: len(r.Symbols),
		EstIn: q.TokensIn, EstOut: q.OutHigh, UsedIn: r.TokensIn, UsedOut: r.TokensOut, Runtime: r.FinishedAt.Sub(r.StartedAt)}
	if r.Agent != nil {
		o.Steps = r.Agent.ModelSteps()
	}
	if err := os.RecordObservation(ctx, o); err != nil {
		e.log().Warn("record observation", "run_id", r.ID, "err", err)
	}
}
