package research

import (
	"time"

	"github.com/tokensforge/forgebot/research/llm"

	"github.com/tokensforge/forgebot/billing"
)

// Event is a run's progress as a user sees it. Events of one run are
// published in order; the last one has Final set.
type Event struct {
	Run        Run // a snapshot
	Stage      int // 1-based index of the current stage
	StageCount int
	StageName  string
	Percent    int
	TokensIn   int64
	TokensOut  int64
	Cost       billing.Money
	Elapsed    time.Duration
	Remaining  time.Duration // estimate; 0 when unknown
	Note       string        // e.g. "retrying after a 429", "paused"
	// Queued is set while the run's model call waits for its route's
	// capacity (route limits): its place in line and expected wait.
	Queued *llm.Queue
	Final  bool
	// CancelLatency is, on the final event of a cancelled run, the time from
	// the cancel request to the settlement (0 when unknown).
	CancelLatency time.Duration
	Report        *Report // set on the final event of a run that produced one
	Chart         []byte  // PNG, with the report
	ReceiptURL    string
}

// Sink receives events. Publish must not block for long: the conversation
// layer's outbox coalesces them per message.
type Sink interface {
	Publish(ev Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

// Publish calls f.
func (f SinkFunc) Publish(ev Event) { f(ev) }
