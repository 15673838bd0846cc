package billing

import "errors"

// Sentinel errors returned by Store implementations; callers match them with errors.Is.
var (
	// ErrInsufficientFunds: the bucket's available balance is below the amount asked for.
	ErrInsufficientFunds = errors.New("insufficient funds")
	// ErrIdempotencyConflict: the key was used before for a different operation or payload.
	ErrIdempotencyConflict = errors.New("idempotency key reused with a different payload")
	// ErrUnknownAccount: no account exists for the identity or id.
	ErrUnknownAccount = errors.New("unknown account")
	// ErrUnknownHold: no hold has that id.
	ErrUnknownHold = errors.New("unknown hold")
	// ErrHoldResolved: the hold was already captured, released or expired.
	ErrHoldResolved = errors.New("hold already resolved")
	// ErrHoldExpired: the hold is past its time to live and can no longer be captured.
	ErrHoldExpired = errors.New("hold expired")
	// ErrCaptureExceedsHold: a capture asked for more than the hold holds.
	ErrCaptureExceedsHold = errors.New("capture exceeds held amount")
	// ErrMissingKey: a money operation came without an idempotency key.
	ErrMissingKey = errors.New("missing idempotency key")
	// ErrBadKey: an idempotency key that is too long, has control characters,
	// or uses the prefix reserved for the store's own entries.
	ErrBadKey = errors.New("invalid idempotency key")
	// ErrLinkConflict: the identities cannot be joined to one account.
	ErrLinkConflict = errors.New("identities cannot be linked")
	// ErrNotFound: a receipt or record does not exist (or is not visible to the caller).
	ErrNotFound = errors.New("not found")
	// ErrRateLimited: too many attempts; try later.
	ErrRateLimited = errors.New("too many attempts, try again later")
	// ErrSchemaBehind: the database schema is older than this build; run `forgebot migrate`.
	ErrSchemaBehind = errors.New("database schema is behind: run `forgebot migrate`")
)
