package research

import (
	"context"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// Store keeps quotes and runs. store/postgres and store/sqlite implement it
// next to billing.Store, on the same database, so a run's state and its money
// move in one transaction.
type Store interface {
	// SaveQuote inserts or replaces a quote.
	SaveQuote(ctx context.Context, q Quote) error
	// PruneQuotes deletes quotes that expired before the time and never
	// became a run; it returns how many.
	PruneQuotes(ctx context.Context, before time.Time) (int64, error)
	// Quote returns a quote or ErrNotFound.
	Quote(ctx context.Context, id string) (Quote, error)
	// ConfirmQuote, in one transaction: marks the quote confirmed (ErrQuoteUsed
	// unless it was open), places the hold (billing.ErrInsufficientFunds),
	// inserts the run as queued with its first transition, and enqueues its job
	// (leased to ctx's holder when the queue is the process's own, WithHolder).
	// holds[0] is the run's hold; holds[1], when present, the other-bucket
	// fallback's.
	ConfirmQuote(ctx context.Context, quoteID string, run Run, holds []billing.HoldRequest, timeout time.Duration) (Run, error)
	// Run returns a run or ErrNotFound.
	Run(ctx context.Context, id string) (Run, error)
	// UpdateRun applies fn to the locked run and stores it; a changed state is
	// stored as a transition. fn's error aborts the update and is returned.
	// A run already terminal is refused with ErrWrongState, fn not called.
	// Under a lease (WithLease) the write is refused with ErrLeaseLost when
	// the lease has moved to another owner; SettleRun likewise.
	UpdateRun(ctx context.Context, id, actor, reason string, fn func(*Run) error) (Run, error)
	// AdvanceRun records progress of a run executing under this process's
	// lease (WithLease), in one statement where the database allows: p
	// replaces the stored progress, and when stage >= 0 output becomes that
	// stage's stored text. It applies only if the run is still at version
	// (nothing else wrote it since the caller read or wrote it) and the lease
	// is still held; the run is then at version+1. Otherwise nothing is
	// written and the error is ErrStale: the caller goes through UpdateRun,
	// which reads the run afresh (and reports ErrLeaseLost or ErrWrongState).
	AdvanceRun(ctx context.Context, id string, version int64, p Progress, stage int, output string) error
	// SettleRun, in one transaction: locks the run, lets charge say what to
	// capture from the run's hold and from the fallback hold (if any; it may
	// add the interrupted call's usage to the run), captures that (or
	// releases the hold when it is 0), lets fn set the terminal state and fill
	// the receipt, saves both and the transition. A run already terminal is
	// returned unchanged with ErrWrongState. Each hold gets its own receipt.
	SettleRun(ctx context.Context, id, actor, reason string, charge func(*Run) (capture, fallbackCapture billing.Money), fn func(*Run, *billing.Receipt) error) (Run, error)
	// RequeueRun sets the run queued, enqueues a new job and extends the
	// run's open hold to now+holdTTL, in one transaction (leasing the run to
	// ctx's holder as ConfirmQuote does).
	RequeueRun(ctx context.Context, id, actor, reason string, timeout, holdTTL time.Duration) (Run, error)
	// ContinueRun is RequeueRun for a paused run that may also gain an
	// extension: in one transaction it applies fn to the locked run (its
	// error aborts), places extra (when not nil) in the run's bucket and
	// records it in Run.Extensions (billing.ErrInsufficientFunds and the
	// spend-limit errors as PlaceHold; a repeated key is the same hold),
	// extends every open hold of the run to now+holdTTL and enqueues its
	// job. ErrWrongState unless the run is paused.
	ContinueRun(ctx context.Context, id, actor, reason string, extra *billing.HoldRequest, timeout, holdTTL time.Duration, fn func(*Run) error) (Run, error)
	// CancelJob asks the queue to cancel a run's job wherever it runs.
	CancelJob(ctx context.Context, jobID int64) error
	// Transitions lists a run's state changes, oldest first.
	Transitions(ctx context.Context, runID string) ([]Transition, error)
	// StaleRuns lists runs in one of states not updated since before.
	StaleRuns(ctx context.Context, states []State, before time.Time, limit int) ([]Run, error)
	// ClaimRun gives owner the run's lease until until: at now, the run must be
	// unleased, leased by owner, or its lease lapsed (ErrLeaseHeld otherwise).
	ClaimRun(ctx context.Context, id, owner string, now, until time.Time) error
	// RenewLease extends owner's lease; ErrLeaseLost when owner no longer holds it.
	RenewLease(ctx context.Context, id, owner string, until time.Time) error
	// ReleaseLease ends owner's lease (a no-op when owner does not hold it).
	// On a store whose queue is its process's own, a run still live keeps
	// its lease (renewed by RenewLeases while the process lives): its job
	// (a retry, say) can only run there, so the lease is its liveness.
	ReleaseLease(ctx context.Context, id, owner string) error
	// RenewLeases extends to until every lease owner holds on a live run:
	// the process's heartbeat, which keeps alive the runs it queued with a
	// lease (WithHolder) but has not started. It returns how many.
	RenewLeases(ctx context.Context, owner string, until time.Time) (int64, error)
	// LapsedRuns lists live runs whose lease ended before now: their process died.
	LapsedRuns(ctx context.Context, now time.Time, limit int) ([]Run, error)
	// TakeOverRun, in one transaction, for a run whose lease lapsed before
	// now: cancels its old job, enqueues a new one and clears the lease (or
	// gives it to ctx's holder, as ConfirmQuote does), so the run resumes on
	// any instance. ErrWrongState when the lease is live
	// again or the run ended.
	TakeOverRun(ctx context.Context, id string, now time.Time, timeout time.Duration) (Run, error)
	// EndedLapsed lists ended runs whose lease lapsed before now: their
	// process died after settling them and before releasing the lease, so
	// perhaps before their final message was handed over.
	EndedLapsed(ctx context.Context, now time.Time, limit int) ([]Run, error)
	// ClearLapsedLease clears a lease that lapsed before now; false when it
	// was not lapsed (or another caller cleared it first).
	ClearLapsedLease(ctx context.Context, id string, now time.Time) (bool, error)
	// RunsOf lists an account's newest runs.
	RunsOf(ctx context.Context, account billing.AccountID, limit int) ([]Run, error)
	// Watchlists returns an account's watchlists by name.
	Watchlists(ctx context.Context, account billing.AccountID) (map[string][]string, error)
	// UpdateWatchlist applies fn to one list (its symbols, whether it exists,
	// how many lists the account has) under a lock and stores the result; an
	// empty result deletes the list.
	UpdateWatchlist(ctx context.Context, account billing.AccountID, name string, fn func(symbols []string, exists bool, count int) ([]string, error)) ([]string, error)
}

// Executor runs a queued run; the queue's workers call it. attempt counts from 1.
type Executor interface {
	Execute(ctx context.Context, runID string, attempt, maxAttempts int) error
}
