package research

import (
	"fmt"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/market"
)

// Kind is what a run does.
type Kind string

const (
	KindResearch Kind = "research" // research on the given symbols
	KindScan     Kind = "scan"     // rank a watchlist by signals, write up the top ones
	KindAsk      Kind = "ask"      // answer a question with the market tools (an agent run)
)

// Destination is where a run's progress and result go: opaque to the engine,
// stored with the run so any instance can update the same message.
type Destination struct {
	Platform  string `json:"platform"`
	ChatID    string `json:"chat_id"`
	MessageID string `json:"message_id,omitempty"`
	ThreadID  string `json:"thread_id,omitempty"`
	// Token is a platform credential that lets the message be edited (a
	// Discord interaction token) and When when it was issued.
	Token string    `json:"token,omitempty"`
	When  time.Time `json:"when,omitempty"`
	// Ref names the message when there is no MessageID yet (a scheduled
	// run posts a new one): the outbox sends once, then edits what it sent.
	Ref string `json:"ref,omitempty"`
}

// Request is what a user asked for.
type Request struct {
	Kind      Kind              `json:"kind"`
	Symbols   []string          `json:"symbols,omitempty"`
	Watchlist string            `json:"watchlist,omitempty"`
	Depth     Depth             `json:"depth"`
	Model     string            `json:"model,omitempty"`
	RouteKind billing.RouteKind `json:"route_kind,omitempty"`
	// Consent allows falling back to a route of the other bucket.
	Consent bool             `json:"consent"`
	Owner   billing.Identity `json:"owner"`
	Dest    Destination      `json:"dest"`
	// CSV asks for a scan's ranked table as a CSV file as well.
	CSV bool `json:"csv,omitempty"`
	// ScheduleID is set when a schedule made the request.
	ScheduleID string `json:"schedule_id,omitempty"`

	// Agent runs (Depth Agent; KindAsk is always one): Question is what an
	// ask asks; Cap the most the run may spend (0: DefaultAgentCap); AskAt
	// the percent of the cap at which the run pauses to ask the owner
	// whether to go on (0: DefaultAskAt; AskOff: never ask, wrap up at
	// the cap).
	Question string        `json:"question,omitempty"`
	Cap      billing.Money `json:"cap,omitempty"`
	AskAt    int           `json:"ask_at,omitempty"`
	AskOff   bool          `json:"ask_off,omitempty"`
}

// Validate checks the shape of a request (symbols are checked against market
// data when the quote is built).
func (r Request) Validate() error {
	if r.Kind != KindResearch && r.Kind != KindScan && r.Kind != KindAsk {
		return fmt.Errorf("%w: unknown kind %q", ErrBadRequest, r.Kind)
	}
	if r.Kind == KindAsk && r.Depth != Agent {
		return fmt.Errorf("%w: a question is answered by an agent run", ErrBadRequest)
	}
	if r.Depth == Agent {
		if err := r.validateAgent(); err != nil {
			return err
		}
	}
	plan, ok := Plans[r.Depth]
	if !ok {
		return fmt.Errorf("%w: depth %q: use quick, standard or deep", ErrBadRequest, r.Depth)
	}
	if err := r.Owner.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	switch r.Kind {
	case KindResearch:
		if len(r.Symbols) == 0 {
			return fmt.Errorf("%w: name at least one symbol, like /research NVDA", ErrBadRequest)
		}
		// A symbol named twice (AAPL aapl) is researched once and counts once.
		distinct := map[string]bool{}
		for _, s := range r.Symbols {
			k := strings.ToUpper(s)
			if n, err := market.NormalizeSymbol(s); err == nil {
				k = n
			}
			distinct[k] = true
		}
		if len(distinct) > plan.MaxSymbols {
			return fmt.Errorf("%w: %s research takes up to %d symbols, you gave %d", ErrBadRequest, r.Depth, plan.MaxSymbols, len(distinct))
		}
	case KindScan:
		if r.Watchlist == "" {
			return fmt.Errorf("%w: name a watchlist, like /scan us-megacaps", ErrBadRequest)
		}
	}
	return nil
}

// MaxQuestion bounds a question's length in characters.
const MaxQuestion = 500

func (r Request) validateAgent() error {
	q := strings.TrimSpace(r.Question)
	switch {
	case r.Kind == KindAsk && q == "":
		return fmt.Errorf("%w: ask a question, like /ask is NVDA overbought against the other semis? cap:0.50", ErrBadRequest)
	case len([]rune(q)) > MaxQuestion:
		return fmt.Errorf("%w: a question takes up to %d characters", ErrBadRequest, MaxQuestion)
	case r.Cap < 0:
		return fmt.Errorf("%w: a cap must be positive", ErrBadRequest)
	case r.Cap > MaxAgentCap:
		return fmt.Errorf("%w: a cap is at most %s", ErrBadRequest, MaxAgentCap)
	case r.AskAt != 0 && (r.AskAt < 10 || r.AskAt > 95):
		return fmt.Errorf("%w: ask:%d: ask between 10%% and 95%% of the cap, or ask:off", ErrBadRequest, r.AskAt)
	}
	return nil
}
