package bots

import (
	"context"
	"errors"
	"time"

	"github.com/tokensforge/forgebot/research"
)

// ErrKept is SaveMessage's answer for a run's final view when one is kept
// already: the run's final was published again after its process died.
var ErrKept = errors.New("the run's final message is kept already")

// MessageStore is what the outbox keeps in the database: final views due
// for delivery (so a crash or a platform outage cannot lose them), and per
// run the order of the views sent, across instances. store/postgres and
// store/sqlite implement it.
type MessageStore interface {
	// SaveMessage stores m, claimed by owner until until, and returns its id;
	// ErrKept when m is the final of a run whose final is stored already.
	SaveMessage(ctx context.Context, m StoredMessage, owner string, until time.Time) (int64, error)
	// ClaimMessages claims for owner, until until, up to limit undelivered
	// messages of the platforms whose claim lapsed before now, oldest first.
	ClaimMessages(ctx context.Context, owner string, platforms []string, now, until time.Time, limit int) ([]StoredMessage, error)
	// RenewMessages extends owner's claims on its undelivered messages.
	RenewMessages(ctx context.Context, owner string, until time.Time) error
	// FinishMessage records a message delivered (or given up) at at.
	FinishMessage(ctx context.Context, id int64, delivered bool, at time.Time) error
	// PruneMessages deletes the messages done (delivered or given up) before
	// before, and the view order of runs whose final went out before it, in
	// bounded batches; it returns how many rows went.
	PruneMessages(ctx context.Context, before time.Time) (int64, error)

	// BeginView asks to send run runID's view at version. A non-final view
	// may go (ok) unless a newer one was sent, the final went out or the
	// run ended; it is then marked in flight until until. A final view
	// always may, and from then on no other view of the run does; wait is
	// how long another instance may still be sending an older view, which
	// the final must follow.
	BeginView(ctx context.Context, runID string, version int64, final bool, now, until time.Time) (ok bool, wait time.Duration, err error)
	// EndView records the end of a send BeginView allowed: sent is the
	// version that went out (0 when it failed); until is what BeginView was
	// given, for a non-final view.
	EndView(ctx context.Context, runID string, sent int64, final bool, until time.Time) error
}

// StoredMessage is a kept message.
type StoredMessage struct {
	ID       int64
	Platform string
	Key      string // chat and message, for operators
	RunID    string // the run it shows, if any, and its version
	Version  int64
	Body     []byte // storedBody as JSON
	Created  time.Time
}

// storedBody is what a stored message holds.
type storedBody struct {
	Dest research.Destination `json:"dest"`
	View View                 `json:"view"`
}
