package scheduler

import (
	"context"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// Status is where a schedule is.
type Status string

const (
	Proposed Status = "proposed" // quoted, not confirmed yet
	Active   Status = "active"
	Paused   Status = "paused"
	Deleted  Status = "deleted"
)

// Schedule is a recurring run owned by one user, posting to the chat it was made in.
type Schedule struct {
	ID        string            `json:"id"`
	AccountID billing.AccountID `json:"account_id"`
	Owner     billing.Identity  `json:"owner"`
	Status    Status            `json:"status"`
	Spec      string            `json:"spec"`
	Zone      string            `json:"zone"`
	Request   research.Request  `json:"request"`
	Cap       billing.Money     `json:"cap"`
	NextRunAt time.Time         `json:"next_run_at"` // UTC
	LastFire  time.Time         `json:"last_fire"`
	LastRunID string            `json:"last_run_id,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	// The quote shown when it was made.
	CostLow  billing.Money  `json:"cost_low"`
	CostHigh billing.Money  `json:"cost_high"`
	Bucket   billing.Bucket `json:"bucket"`
}

// Outcome is what became of one fire time.
type Outcome string

const (
	Pending        Outcome = "pending"         // claimed, its job will decide
	Started        Outcome = "started"         // a run was confirmed
	SkippedOverlap Outcome = "skipped_overlap" // the previous run was still going
	SkippedBalance Outcome = "skipped_balance" // too little balance for the quote
	SkippedCap     Outcome = "skipped_cap"     // the quote was above the schedule's cap
	SkippedLimit   Outcome = "skipped_limit"   // the run would pass the owner's spend limit
	SkippedPaused  Outcome = "skipped_paused"
	Missed         Outcome = "missed" // due while nothing ran, outside the catch-up window
	FailedOutcome  Outcome = "failed" // the quote could not be made
)

// Fire is one fire time of a schedule; (ScheduleID, At) is unique.
type Fire struct {
	ScheduleID string    `json:"schedule_id"`
	At         time.Time `json:"at"`
	Outcome    Outcome   `json:"outcome"`
	RunID      string    `json:"run_id,omitempty"`
	Note       string    `json:"note,omitempty"`
}

// Due is what the claimer decided for one due schedule.
type Due struct {
	Fire   *time.Time  // the time to run now, if any
	Missed []time.Time // times recorded as missed
	Next   time.Time   // the next fire time
	// Skip leaves the schedule as it is, for a claimer that can report to
	// its chat (Fire, Missed and Next are ignored).
	Skip bool
}

// Store keeps schedules and their fires.
type Store interface {
	SaveSchedule(ctx context.Context, s Schedule) error
	Schedule(ctx context.Context, id string) (Schedule, error)
	SchedulesOf(ctx context.Context, account billing.AccountID) ([]Schedule, error)
	// UpdateSchedule applies fn to the locked schedule and stores it.
	UpdateSchedule(ctx context.Context, id string, fn func(*Schedule) error) (Schedule, error)
	// ActivateSchedule is UpdateSchedule for a change that makes the
	// schedule live: in the same transaction, it counts the account's other
	// live (active or paused) schedules and refuses with ErrBadSpec when
	// they are max or more, so concurrent confirms never pass the limit.
	ActivateSchedule(ctx context.Context, id string, max int, fn func(*Schedule) error) (Schedule, error)
	// ScheduleCounts counts an account's schedules by status.
	ScheduleCounts(ctx context.Context, account billing.AccountID) (map[Status]int, error)
	// PruneProposals deletes proposals not confirmed since before.
	PruneProposals(ctx context.Context, before time.Time) (int64, error)
	// ClaimDue locks up to limit active schedules due at now (skipping ones
	// another claimer holds), lets decide choose, records the fire and missed
	// times (a time already recorded is never fired again), enqueues the fire
	// job and advances next_run_at, all in one transaction per batch. It
	// returns the fires it enqueued.
	ClaimDue(ctx context.Context, now time.Time, limit int, decide func(Schedule) Due) ([]Fire, error)
	// Fire returns one fire record, or research.ErrNotFound.
	Fire(ctx context.Context, scheduleID string, at time.Time) (Fire, error)
	// SetFire records a fire's outcome.
	SetFire(ctx context.Context, f Fire) error
	// Fires lists a schedule's newest fire records.
	Fires(ctx context.Context, scheduleID string, limit int) ([]Fire, error)
}

// Firer fires one claimed time of a schedule; the queue's workers call it.
// Service implements it.
type Firer interface {
	// Fire fires the time; attempt counts from 1 up to maxAttempts, the
	// queue's last try. An error asks for another attempt: on the last one
	// (or for an error no retry can fix) Service records the fire as failed
	// and tells the schedule's chat instead, so no time stays pending.
	Fire(ctx context.Context, scheduleID string, at time.Time, attempt, maxAttempts int) error
}
