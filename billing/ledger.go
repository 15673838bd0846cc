package billing

import (
	"fmt"
	"time"
)

// EntryKind says what a ledger entry records.
type EntryKind string

const (
	KindGrant   EntryKind = "grant"   // free credit given by forgebot (posted +)
	KindTopup   EntryKind = "topup"   // money paid in (posted +)
	KindHold    EntryKind = "hold"    // a hold placed (held +)
	KindCapture EntryKind = "capture" // a hold charged (posted -, held -)
	KindRelease EntryKind = "release" // a hold given back, by release, partial capture or expiry (held -)
	// KindRefund is money given back: to a bucket after a capture (posted +),
	// or to a payer when a payment is refunded (negative: posted − for what
	// was still there, debt + for what was already spent).
	KindRefund     EntryKind = "refund"
	KindAdjustment EntryKind = "adjustment" // an operator's signed correction (posted ±)
)

// Entry is one append-only ledger line. PostedDelta and HeldDelta are its
// effect on the bucket; Amount is the figure a user reads: positive when money
// becomes available, negative when it leaves or is set aside.
type Entry struct {
	ID          int64
	AccountID   AccountID
	Bucket      Bucket
	Kind        EntryKind
	Amount      Money
	PostedDelta Money
	HeldDelta   Money
	DebtDelta   Money // + when a refund leaves debt, − when money in pays it
	HoldID      int64 // 0 unless the entry belongs to a hold
	Reference   string
	Key         string
	Actor       string
	CreatedAt   time.Time

	// Replayed is true when this result was returned for a repeated
	// idempotency key rather than written by this call. It is not stored.
	Replayed bool
}

// PostRequest moves money into or out of a bucket's posted balance without a
// hold: grants, top-ups, refunds and adjustments.
type PostRequest struct {
	// AccountID names the account; when zero, Identity names it and the
	// account is created in the same transaction if it does not exist.
	AccountID AccountID
	Identity  Identity
	Bucket    Bucket
	Kind      EntryKind // grant, topup, refund or adjustment
	Amount    Money     // > 0, except adjustments: != 0
	Key       string
	Reference string // run, receipt or operator note
	Actor     string
}

// A grant, top-up or (positive) refund pays the bucket's debt first: the
// entry's Amount is what came in, its DebtDelta what it paid off, and its
// PostedDelta the rest.

// Validate checks the request before it reaches the database.
func (r PostRequest) Validate() error {
	if err := CheckKey(r.Key); err != nil {
		return err
	}
	if _, err := ParseBucket(string(r.Bucket)); err != nil {
		return err
	}
	if r.AccountID == 0 {
		if err := r.Identity.Validate(); err != nil {
			return err
		}
	}
	switch r.Kind {
	case KindGrant, KindTopup, KindRefund:
		if r.Amount <= 0 {
			return fmt.Errorf("%w: a %s must be positive, got %s", ErrInvalidAmount, r.Kind, r.Amount)
		}
	case KindAdjustment:
		if r.Amount == 0 {
			return fmt.Errorf("%w: an adjustment cannot be zero", ErrInvalidAmount)
		}
	default:
		return fmt.Errorf("cannot post an entry of kind %q", r.Kind)
	}
	return checkAmount(r.Amount)
}

// Fingerprint is the payload that a repeated key must match.
func (r PostRequest) Fingerprint() string {
	who := r.Identity.String()
	if r.AccountID != 0 {
		who = fmt.Sprintf("account:%d", r.AccountID)
	}
	return fmt.Sprintf("post|%s|%s|%s|%d", r.Kind, who, r.Bucket, r.Amount)
}
