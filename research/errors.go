package research

import "errors"

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
