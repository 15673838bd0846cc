package research

import (
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// QuoteStatus is where a quote is in its life.
type QuoteStatus string

const (
	QuoteOpen      QuoteStatus = "open"
	QuoteConfirmed QuoteStatus = "confirmed"
	QuoteDeclined  QuoteStatus = "declined"
	QuoteExpired   QuoteStatus = "expired"
)

// Quote is the preview a user confirms: what will run, what it may cost,
// which bucket pays and what happens if things go wrong. Its Hold is the top
// of the cost range.
type Quote struct {
	ID        string            `json:"id"`
	Request   Request           `json:"request"`
	AccountID billing.AccountID `json:"account_id"`
	Status    QuoteStatus       `json:"status"`
	RunID     string            `json:"run_id,omitempty"`
	// OtherBucketRoutes: a route of the other bucket serves the model, so
	// consenting to an other-bucket fallback would change the chain.
	OtherBucketRoutes bool `json:"other_bucket_routes,omitempty"`

	RouteID   string            `json:"route_id"`
	Model     string            `json:"model"`
	RouteKind billing.RouteKind `json:"route_kind"`
	KeyMasked string            `json:"key_masked"`
	Offline   bool              `json:"offline"` // the rule-based offline analyst, not an LLM
	Fallbacks []string          `json:"fallbacks,omitempty"`
	Price     billing.Price     `json:"price"`

	Bucket    billing.Bucket `json:"bucket"`
	Available billing.Money  `json:"available"`
	AfterHold billing.Money  `json:"after_hold"`
	Shortfall billing.Money  `json:"shortfall"` // > 0: not enough to confirm
	// Debt > 0: a refund left the account owing; no run until it is paid.
	Debt billing.Money `json:"debt,omitempty"`
	// Spend is what the account spent today and this month against its
	// limits; OverLimit, when set, says which limit this run would pass.
	Spend     *billing.Spend `json:"spend,omitempty"`
	OverLimit string         `json:"over_limit,omitempty"`

	// With consent to an other-bucket fallback, that bucket pays the
	// fallback's tokens from a second hold placed at confirm. A zero
	// FallbackHold means no other-bucket fallback (none allowed, none
	// serving the model, or too little in that bucket: FallbackNote says).
	FallbackBucket    billing.Bucket `json:"fallback_bucket,omitempty"`
	FallbackHold      billing.Money  `json:"fallback_hold,omitempty"`
	FallbackAvailable billing.Money  `json:"fallback_available,omitempty"`
	FallbackNote      string         `json:"fallback_note,omitempty"`

	Symbols     []string `json:"symbols"`
	SymbolNotes []string `json:"symbol_notes,omitempty"` // e.g. what a scan picked and why
	// Scan is a scan's ranked table of every watchlist symbol, as of the quote.
	Scan       []ScanRow `json:"scan,omitempty"`
	DataSource string    `json:"data_source"`
	Synthetic  bool      `json:"synthetic"`
	Stages     []Stage   `json:"stages"`

	Calls    int   `json:"calls"`
	TokensIn int64 `json:"tokens_in"`
	OutLow   int64 `json:"out_low"`
	OutHigh  int64 `json:"out_high"`
	// With Samples > 0 the ranges come from that many recent runs on this
	// route, depth and symbol count: input InLow to InHigh, output OutLow to
	// OutEst (OutHigh stays the limit the hold covers).
	Samples     int           `json:"samples,omitempty"`
	InLow       int64         `json:"in_low,omitempty"`
	InHigh      int64         `json:"in_high,omitempty"`
	OutEst      int64         `json:"out_est,omitempty"`
	Intensity   string        `json:"intensity"`
	CostLow     billing.Money `json:"cost_low"`
	CostHigh    billing.Money `json:"cost_high"`
	Hold        billing.Money `json:"hold"`
	RuntimeLow  time.Duration `json:"runtime_low"`
	RuntimeHigh time.Duration `json:"runtime_high"`
	// QueueWait is the wait for the route's capacity the runtime includes:
	// calls queued on a route at its limits go first (0: none expected).
	QueueWait time.Duration `json:"queue_wait,omitempty"`

	RetryPolicy    string        `json:"retry_policy"`
	FallbackPolicy string        `json:"fallback_policy"`
	FailedCost     billing.Money `json:"failed_cost"`
	CancelPolicy   string        `json:"cancel_policy"`
	// CapPolicy says what the hold bounds and what happens at it;
	// TimeoutPolicy what a run that runs out of time costs.
	CapPolicy     string `json:"cap_policy"`
	TimeoutPolicy string `json:"timeout_policy"`
	ReceiptWhere  string `json:"receipt_where"`

	// Agent is an agent run's cap and bounds (nil for the staged depths),
	// with its step limit, ask-to-continue and typical cost in words.
	Agent       *AgentQuote `json:"agent,omitempty"`
	StepPolicy  string      `json:"step_policy,omitempty"`
	AskPolicy   string      `json:"ask_policy,omitempty"`
	TypicalText string      `json:"typical_text,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CanConfirm reports whether the balance covers the hold.
func (q Quote) CanConfirm() bool {
	return q.Shortfall <= 0 && q.Debt <= 0 && q.OverLimit == "" && q.Status == QuoteOpen
}

// intensity labels the estimated total tokens for a user.
func intensity(tokens int64) string {
	switch {
	case tokens < 10_000:
		return "light"
	case tokens < 40_000:
		return "moderate"
	default:
		return "heavy"
	}
}
