package research

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// State is where a run is. Exactly one terminal state ends every run.
type State string

const (
	Queued     State = "queued"
	Running    State = "running"
	Pausing    State = "pausing"
	Paused     State = "paused"
	Cancelling State = "cancelling"
	Succeeded  State = "succeeded"
	Partial    State = "partial"
	Failed     State = "failed"
	Cancelled  State = "cancelled"
	Expired    State = "expired"
)

// Terminal reports whether s ends a run.
func (s State) Terminal() bool {
	switch s {
	case Succeeded, Partial, Failed, Cancelled, Expired:
		return true
	}
	return false
}

// Run is one confirmed, paid piece of research.
type Run struct {
	ID        string            `json:"id"`
	QuoteID   string            `json:"quote_id"`
	AccountID billing.AccountID `json:"account_id"`
	Owner     billing.Identity  `json:"owner"`
	Request   Request           `json:"request"`
	State     State             `json:"state"`

	Symbols   []string          `json:"symbols"`
	Scan      []ScanRow         `json:"scan,omitempty"` // a scan's ranked table, from its quote
	Stages    []Stage           `json:"stages"`
	Done      int               `json:"done"`    // stages finished
	Outputs   map[int]string    `json:"outputs"` // finished stages' text, by stage index, kept for resume
	Chain     []string          `json:"chain"`   // route ids in fallback order
	RouteID   string            `json:"route_id"`
	Model     string            `json:"model"`
	RouteKind billing.RouteKind `json:"route_kind"`
	Offline   bool              `json:"offline"`
	Price     billing.Price     `json:"price"`
	// Prices are the chain's routes' prices when the run was confirmed, and
	// ByRoute its tokens per route: each route's tokens are priced at that
	// route's price, rounded up once per route.
	Prices    map[string]billing.Price `json:"prices,omitempty"`
	ByRoute   map[string]Tokens        `json:"by_route,omitempty"`
	Bucket    billing.Bucket           `json:"bucket"`
	HoldID    int64                    `json:"hold_id"`
	Hold      billing.Money            `json:"hold"`
	Synthetic bool                     `json:"synthetic"`
	// Buckets name the bucket paying each chain route's tokens; an
	// other-bucket fallback is paid from its own hold in that bucket.
	Buckets           map[string]billing.Bucket `json:"buckets,omitempty"`
	FallbackBucket    billing.Bucket            `json:"fallback_bucket,omitempty"`
	FallbackHoldID    int64                     `json:"fallback_hold_id,omitempty"`
	FallbackHold      billing.Money             `json:"fallback_hold,omitempty"`
	FallbackCaptured  billing.Money             `json:"fallback_captured,omitempty"`
	FallbackReceiptID string                    `json:"fallback_receipt_id,omitempty"`

	// Usage of finished stages (and, when settled, of the interrupted one).
	TokensIn     int64               `json:"tokens_in"`
	TokensOut    int64               `json:"tokens_out"`
	InSource     billing.UsageSource `json:"in_source"`
	OutSource    billing.UsageSource `json:"out_source"`
	Attempts     int                 `json:"attempts"`
	Failures     int                 `json:"failures"`
	CrossBucket  bool                `json:"cross_bucket"`
	SymbolErrors map[string]string   `json:"symbol_errors,omitempty"`
	// Missing names a whole-run stage that failed after others had written
	// (and the stages not run after it): the run ends partial.
	Missing string `json:"missing,omitempty"`
	// Exposure is what the provider side used per route as far as forgebot
	// can tell: the charged usage plus attempts that were not charged
	// (failed streams, the local count where usage was not believed). Every
	// call is reserved against the hold on top of it.
	Exposure map[string]Tokens `json:"exposure,omitempty"`
	// Anomalies describe provider usage that was not believed: the local
	// count was charged; both figures are kept here and on the receipt.
	Anomalies []string `json:"anomalies,omitempty"`

	// Agent is an agent run's state (nil for the staged depths): its
	// question, its stored steps, an open question to the owner.
	Agent *AgentState `json:"agent,omitempty"`
	// Extensions are holds the owner added to the run's bucket with
	// consent (an agent run's Continue): the run may spend Hold plus them.
	Extensions []Extension `json:"extensions,omitempty"`

	Captured  billing.Money `json:"captured"`
	ReceiptID string        `json:"receipt_id,omitempty"`
	// CaptureEntryID is the ledger entry that charged the run (0 when
	// nothing was charged), and AvailableAfter the bucket's available
	// balance right after the settle: the final card shows both without
	// reading the ledger again.
	CaptureEntryID int64         `json:"capture_entry_id,omitempty"`
	AvailableAfter billing.Money `json:"available_after,omitempty"`
	Error          string        `json:"error,omitempty"`
	JobID          int64         `json:"job_id"`
	// Version counts the run's stored changes: the store increments it on
	// every write, so views of the run can be ordered across instances.
	Version int64 `json:"version"`

	PauseRequested    bool      `json:"pause_requested"`
	CancelRequested   bool      `json:"cancel_requested"`
	CancelRequestedAt time.Time `json:"cancel_requested_at"`

	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at"`
	PausedAt   time.Time `json:"paused_at"`
	FinishedAt time.Time `json:"finished_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Progress is the part of a run that changes as its stages finish and its
// calls are reserved: what the executing process writes many times a run.
// The store keeps it apart from the rest of the run (which is written a few
// times a run), and each finished stage's text in a row of its own, so a
// stage's write sends neither the run's body nor the earlier stages' text.
type Progress struct {
	Done         int                 `json:"done"`
	TokensIn     int64               `json:"tokens_in"`
	TokensOut    int64               `json:"tokens_out"`
	InSource     billing.UsageSource `json:"in_source,omitempty"`
	OutSource    billing.UsageSource `json:"out_source,omitempty"`
	ByRoute      map[string]Tokens   `json:"by_route,omitempty"`
	Exposure     map[string]Tokens   `json:"exposure,omitempty"`
	Attempts     int                 `json:"attempts,omitempty"`
	Failures     int                 `json:"failures,omitempty"`
	CrossBucket  bool                `json:"cross_bucket,omitempty"`
	RouteID      string              `json:"route_id,omitempty"`
	Missing      string              `json:"missing,omitempty"`
	Anomalies    []string            `json:"anomalies,omitempty"`
	SymbolErrors map[string]string   `json:"symbol_errors,omitempty"`
	UpdatedAt    time.Time           `json:"updated_at"`
}

// Progress returns r's progress.
func (r Run) Progress() Progress {
	return Progress{Done: r.Done, TokensIn: r.TokensIn, TokensOut: r.TokensOut, InSource: r.InSource, OutSource: r.OutSource,
		ByRoute: r.ByRoute, Exposure: r.Exposure, Attempts: r.Attempts, Failures: r.Failures, CrossBucket: r.CrossBucket,
		RouteID: r.RouteID, Missing: r.Missing, Anomalies: r.Anomalies, SymbolErrors: r.SymbolErrors, UpdatedAt: r.UpdatedAt}
}

// SetProgress replaces r's progress with p.
func (r *Run) SetProgress(p Progress) {
	r.Done, r.TokensIn, r.TokensOut, r.InSource, r.OutSource = p.Done, p.TokensIn, p.TokensOut, p.InSource, p.OutSource
	r.ByRoute, r.Exposure, r.Attempts, r.Failures, r.CrossBucket = p.ByRoute, p.Exposure, p.Attempts, p.Failures, p.CrossBucket
	r.RouteID, r.Missing, r.Anomalies, r.SymbolErrors, r.UpdatedAt = p.RouteID, p.Missing, p.Anomalies, p.SymbolErrors, p.UpdatedAt
}

// detached returns a copy of r whose maps and slices a change to the copy
// does not share with r.
func (r Run) detached() Run {
	r.Outputs, r.ByRoute, r.Exposure = maps.Clone(r.Outputs), maps.Clone(r.ByRoute), maps.Clone(r.Exposure)
	r.SymbolErrors, r.Anomalies = maps.Clone(r.SymbolErrors), slices.Clone(r.Anomalies)
	return r
}

// Extension is one additional hold in a run's bucket, placed with the
// owner's consent.
type Extension struct {
	HoldID int64         `json:"hold_id"`
	Amount billing.Money `json:"amount"`
	By     string        `json:"by"`
	At     time.Time     `json:"at"`
}

// Cap is what the run may spend in its bucket: its hold plus the
// extensions its owner consented to.
func (r Run) Cap() billing.Money {
	c := r.Hold
	for _, x := range r.Extensions {
		c = billing.SaturatingAdd(c, x.Amount)
	}
	return c
}

// Tokens counts a route's input and output tokens.
type Tokens struct {
	In  int64 `json:"in"`
	Out int64 `json:"out"`
}

// Cost is what the run's usage costs so far: each route's tokens at its
// price, rounded up once per route. It is a display figure and never panics:
// absurd usage saturates (settling uses CostInChecked, which reports it).
func (r Run) Cost() billing.Money {
	if len(r.ByRoute) == 0 {
		return r.Price.Cost(r.TokensIn, r.TokensOut)
	}
	var total billing.Money
	for id, t := range r.ByRoute {
		total = billing.SaturatingAdd(total, r.priceOf(id).Cost(t.In, t.Out))
	}
	return total
}

// CostIn is what the run's usage costs in bucket b: the tokens of the
// routes b pays for, each at its route's price, rounded up once per route.
// Like Cost it saturates rather than panic.
func (r Run) CostIn(b billing.Bucket) billing.Money {
	m, err := r.CostInChecked(b)
	if err != nil {
		return billing.MaxMoney
	}
	return m
}

// CostInChecked is CostIn that returns billing.ErrOverflow on usage no
// Money can price.
func (r Run) CostInChecked(b billing.Bucket) (billing.Money, error) {
	return costOf(r, r.ByRoute, b)
}

// costOf prices tokens by route in bucket b at the run's prices.
func costOf(r Run, by map[string]Tokens, b billing.Bucket) (billing.Money, error) {
	if len(by) == 0 {
		if b == r.Bucket {
			return r.Price.CostChecked(r.TokensIn, r.TokensOut)
		}
		return 0, nil
	}
	var total billing.Money
	for id, t := range by {
		if r.bucketOf(id) != b {
			continue
		}
		c, err := r.priceOf(id).CostChecked(t.In, t.Out)
		if err != nil {
			return 0, err
		}
		if total, err = billing.Add(total, c); err != nil {
			return 0, err
		}
	}
	return total, nil
}

func (r Run) priceOf(routeID string) billing.Price {
	if p, ok := r.Prices[routeID]; ok {
		return p
	}
	return r.Price
}

// TokensPaidBy counts the tokens of the routes bucket b pays for.
func (r Run) TokensPaidBy(b billing.Bucket) Tokens {
	var out Tokens
	if len(r.ByRoute) == 0 && b == r.Bucket {
		return Tokens{In: r.TokensIn, Out: r.TokensOut}
	}
	for id, t := range r.ByRoute {
		if r.bucketOf(id) == b {
			out.In += t.In
			out.Out += t.Out
		}
	}
	return out
}

// RouteOf is the route that served bucket b's part of the run: the last
// route that answered, if b pays for it, else the first of b's routes that
// was used, else b's first route in the chain.
func (r Run) RouteOf(b billing.Bucket) string {
	if r.bucketOf(r.RouteID) == b {
		return r.RouteID
	}
	first := ""
	for _, id := range r.Chain {
		if r.bucketOf(id) != b {
			continue
		}
		if _, used := r.ByRoute[id]; used {
			return id
		}
		if first == "" {
			first = id
		}
	}
	return first
}

func (r Run) bucketOf(routeID string) billing.Bucket {
	if b, ok := r.Buckets[routeID]; ok {
		return b
	}
	return r.Bucket
}

// addUsage adds one call's tokens, attributed to the route that served them.
// Negative figures count as zero (the client never reports them; a stored
// run from before usage was checked might).
func (r *Run) addUsage(route string, in, out int64) {
	in, out = max(in, 0), max(out, 0)
	r.TokensIn += in
	r.TokensOut += out
	if route == "" {
		route = r.RouteID
	}
	if r.ByRoute == nil {
		r.ByRoute = map[string]Tokens{}
	}
	t := r.ByRoute[route]
	t.In, t.Out = t.In+in, t.Out+out
	r.ByRoute[route] = t
}

// Transition is one stored change of a run's state.
type Transition struct {
	RunID  string    `json:"run_id"`
	From   State     `json:"from"`
	To     State     `json:"to"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Purchase says what the run buys, for its receipt: "research AAPL, NVDA
// (standard)", "scan us-megacaps: AAPL, MSFT (quick)", and "from schedule
// S" when a schedule started it.
func (r Run) Purchase() string {
	what := "research " + strings.Join(r.Symbols, ", ")
	switch r.Request.Kind {
	case KindScan:
		what = "scan " + r.Request.Watchlist + ": " + strings.Join(r.Symbols, ", ")
	case KindAsk:
		what = "ask: " + clipRunes(r.Request.Question, 80)
	}
	what += " (" + string(r.Request.Depth) + ")"
	if r.Request.ScheduleID != "" {
		what += ", from schedule " + r.Request.ScheduleID
	}
	return what
}
