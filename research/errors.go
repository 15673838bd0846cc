package research

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors; the conversation layer maps them to what a user reads.
var (
	ErrBadRequest   = errors.New("bad request")
	ErrQuoteExpired = errors.New("quote expired")
	ErrQuoteChanged = errors.New("price changed since the quote")
	ErrQuoteUsed    = errors.New("quote already used")
	ErrNotFound     = errors.New("not found")
	ErrForbidden    = errors.New("only the run's owner or an admin can do that")
	ErrInsufficient = errors.New("insufficient balance")
	ErrWrongState   = errors.New("not possible in the run's current state")
	ErrNoRoute      = errors.New("no enabled route for that model")
	// ErrDataUnavailable: the market data provider failed (rate limited,
	// down, or malformed); nothing was held. Try again later.
	ErrDataUnavailable = errors.New("market data unavailable")
	ErrCancelled       = errors.New("cancelled by the user")
	ErrShutdown        = errors.New("server shutting down")
	ErrPaused          = errors.New("paused by the user")
	// ErrLeaseHeld: another live instance is executing the run.
	ErrLeaseHeld = errors.New("the run is executing on another instance")
	// ErrLeaseLost: this instance stopped renewing the run's lease in time
	// and another took the run over; its writes are refused.
	ErrLeaseLost = errors.New("the run was taken over by another instance")
	// ErrStale: the run changed since the version a write was based on
	// (Store.AdvanceRun); the caller reads it again (UpdateRun).
	ErrStale = errors.New("the run changed since it was read")
)

// ErrTooManyRuns: the account has as many runs live (queued, running, paused)
// as it may at once; the confirm held nothing. Returned as a *RunLimitError.
var ErrTooManyRuns = errors.New("too many runs at once")

// RunLimitError is ConfirmQuote's refusal under WithRunLimit.
type RunLimitError struct{ Live, Limit int }

func (e *RunLimitError) Error() string {
	return fmt.Sprintf("%v: %d live, at most %d", ErrTooManyRuns, e.Live, e.Limit)
}

func (e *RunLimitError) Unwrap() error { return ErrTooManyRuns }

type runLimitKey struct{}

// WithRunLimit bounds the runs the confirming account may have live at once
// (the new one included) to n: the store counts them in the confirm's
// transaction, under a per-account lock, so confirms at the same instant
// cannot pass it together; over it, Confirm fails with a *RunLimitError.
// The chat sets it (FORGE_MAX_RUNNING); n <= 0 sets no limit.
func WithRunLimit(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, runLimitKey{}, n)
}

// RunLimitOf returns the limit WithRunLimit set, if any.
func RunLimitOf(ctx context.Context) (int, bool) {
	n, ok := ctx.Value(runLimitKey{}).(int)
	return n, ok && n > 0
}
