package billing

import (
	"context"
	"time"
)

// Accounts maps identities to accounts.
type Accounts interface {
	// EnsureAccount returns the identity's account, creating it (with both
	// buckets at zero) on first use.
	EnsureAccount(ctx context.Context, id Identity) (AccountID, error)
	// AccountOf returns the identity's account or ErrUnknownAccount.
	AccountOf(ctx context.Context, id Identity) (AccountID, error)
	// Account returns an account with its identities, or ErrUnknownAccount.
	Account(ctx context.Context, id AccountID) (Account, error)
	// LinkIdentity joins add to have's account. It returns ErrUnknownAccount
	// when have has no account, and ErrLinkConflict when add already belongs to
	// an account that has money or entries, or have's account already has an
	// identity on add's platform.
	LinkIdentity(ctx context.Context, have, add Identity) (AccountID, error)
	// CreateLinkCode stores a one-time code for owner, valid for ttl. It
	// returns ErrRateLimited when owner made more than max codes in the last hour.
	CreateLinkCode(ctx context.Context, owner Identity, code string, ttl time.Duration, max int) error
	// RedeemLinkCode links who to the account of the code's owner, in one
	// transaction with using the code up. ErrNotFound for an unknown, used or
	// expired code; ErrLinkConflict as LinkIdentity. Every attempt is
	// recorded; ErrRateLimited when who made maxPerHour attempts in the last
	// hour, so codes cannot be searched for, even across restarts.
	RedeemLinkCode(ctx context.Context, code string, who Identity, maxPerHour int) (AccountID, error)
}

// Ledger moves money. Every method that writes takes an idempotency key: the
// same key with the same payload returns the first result (Replayed set),
// with another payload ErrIdempotencyConflict; nothing is written either way.
type Ledger interface {
	// Post records a grant, top-up, refund or adjustment. It returns
	// ErrInsufficientFunds when a negative adjustment would leave the bucket's
	// available balance below zero.
	Post(ctx context.Context, req PostRequest) (Entry, error)
	// PlaceHold sets money aside, or returns ErrInsufficientFunds; the check is
	// made atomically in the database.
	PlaceHold(ctx context.Context, req HoldRequest) (Hold, error)
	// CaptureHold charges up to the held amount and releases the rest. It
	// returns ErrHoldResolved, ErrHoldExpired, ErrCaptureExceedsHold or ErrUnknownHold.
	CaptureHold(ctx context.Context, req CaptureRequest) (Hold, error)
	// ReleaseHold gives the whole hold back; ErrHoldResolved or ErrUnknownHold.
	ReleaseHold(ctx context.Context, req ReleaseRequest) (Hold, error)
	// ExpireHolds releases up to limit open holds past their time to live and
	// returns them with status HoldExpired.
	ExpireHolds(ctx context.Context, limit int) ([]Hold, error)
	// Hold returns one hold or ErrUnknownHold.
	Hold(ctx context.Context, id int64) (Hold, error)
	// Balances returns both buckets of an account, or ErrUnknownAccount.
	Balances(ctx context.Context, id AccountID) (Balances, error)
	// Entries returns an account's newest entries first.
	Entries(ctx context.Context, id AccountID, limit int) ([]Entry, error)
	// Audit reads what Check needs to verify the ledger's invariants.
	Audit(ctx context.Context) (Audit, error)
}

// Receipts stores receipts and failed-request records.
type Receipts interface {
	// SaveReceipt inserts or replaces the receipt with r.PublicID (a new
	// public id is made when it is empty) and returns it as stored.
	SaveReceipt(ctx context.Context, r Receipt) (Receipt, error)
	// Receipt returns the receipt with that public id, or ErrNotFound.
	Receipt(ctx context.Context, publicID string) (Receipt, error)
	// RecordFailedRequest appends a failed-request record.
	RecordFailedRequest(ctx context.Context, f FailedRequest) (FailedRequest, error)
	// FailedRequests lists a run's failed requests, oldest first.
	FailedRequests(ctx context.Context, runID string) ([]FailedRequest, error)
}

// Payments records money paid in through providers, the offers behind it,
// grants and spend limits.
type Payments interface {
	// CreateOffer stores an offer (a pending top-up) under its nonce.
	CreateOffer(ctx context.Context, o Offer) error
	// Offer returns the offer with that nonce, or ErrNotFound.
	Offer(ctx context.Context, nonce string) (Offer, error)
	// CreditPayment credits a provider charge once, with its top-up entry, in
	// one transaction: a repeated charge id returns the first result with
	// Replayed set (ErrIdempotencyConflict if its payload differs). With an
	// OfferNonce, ErrOfferMismatch when the payment does not match the offer.
	CreditPayment(ctx context.Context, req PaymentRequest) (Payment, Entry, error)
	// RefundPayment reverses a payment's credit up to req.Total, in one
	// transaction with its refund entry: what the bucket still has is taken
	// back, the rest becomes debt. ErrUnknownPayment; ErrAlreadyRefunded when
	// nothing is left to reverse and req.Total is zero. A Total at or below
	// what was reversed already returns the payment with Replayed set.
	RefundPayment(ctx context.Context, req RefundRequest) (Payment, Entry, error)
	// Payment finds a payment by charge id or external ref; ErrUnknownPayment.
	Payment(ctx context.Context, provider, id string) (Payment, error)
	// GrantWelcome gives id's account the welcome grant once (see
	// WelcomeReference for the rule). granted is false when it had one.
	GrantWelcome(ctx context.Context, id Identity, w Welcome) (e Entry, granted bool, err error)
	// SetLimits stores an account's own spend limits (zero: none).
	SetLimits(ctx context.Context, acc AccountID, l Limits, actor string) error
	// Spending returns what the account spent today and this month (at now)
	// and the limits that apply to it (its own, else defaults).
	Spending(ctx context.Context, acc AccountID, defaults Limits) (Spend, error)
}

// Store is everything billing needs from a database.
type Store interface {
	Accounts
	Ledger
	Payments
	Receipts
	Close() error
}

// Clock returns the current time; stores and sweepers take one so tests can
// move time.
type Clock func() time.Time
