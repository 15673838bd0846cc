package billing

import (
	"fmt"
	"time"
)

// HoldStatus is where a hold is in its life. A hold leaves HoldOpen exactly once.
type HoldStatus string

const (
	HoldOpen     HoldStatus = "open"
	HoldCaptured HoldStatus = "captured" // Captured may be less than Amount; the rest was released
	HoldReleased HoldStatus = "released"
	HoldExpired  HoldStatus = "expired" // released by the sweeper after ExpiresAt
)

// Hold is the first phase of a two-phase payment: money set aside in one
// bucket, later captured (in whole or in part) or released.
type Hold struct {
	ID         int64
	AccountID  AccountID
	Bucket     Bucket
	Amount     Money
	Captured   Money
	Status     HoldStatus
	Reference  string
	Key        string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	ResolvedAt time.Time // zero while open

	// Replayed is true when a repeated idempotency key returned this hold.
	Replayed bool
}

// Released is the part of the hold that went back to the bucket.
func (h Hold) Released() Money {
	if h.Status == HoldOpen {
		return 0
	}
	return h.Amount - h.Captured
}

// HoldRequest places a hold.
type HoldRequest struct {
	AccountID AccountID
	Bucket    Bucket
	Amount    Money
	TTL       time.Duration
	Key       string
	Reference string
	Actor     string
	// DefaultLimits are the operator's spend limits, applied when the account
	// set none of its own; the store checks the account's limits in the same
	// transaction (ErrSpendLimit as a *LimitError), and refuses any hold while
	// the account is in debt (ErrInDebt).
	DefaultLimits Limits
}

// Validate checks the request before it reaches the database.
func (r HoldRequest) Validate() error {
	if err := CheckKey(r.Key); err != nil {
		return err
	}
	if _, err := ParseBucket(string(r.Bucket)); err != nil {
		return err
	}
	if r.Amount <= 0 {
		return fmt.Errorf("%w: a hold must be positive, got %s", ErrInvalidAmount, r.Amount)
	}
	if err := checkAmount(r.Amount); err != nil {
		return err
	}
	if r.TTL <= 0 {
		return fmt.Errorf("a hold needs a positive time to live")
	}
	return nil
}

// Fingerprint is the payload that a repeated key must match.
func (r HoldRequest) Fingerprint() string {
	return fmt.Sprintf("hold|%d|%s|%d|%s", r.AccountID, r.Bucket, r.Amount, r.Reference)
}

// CaptureRequest charges up to the held amount and releases the rest.
type CaptureRequest struct {
	HoldID int64
	Amount Money // 0 <= Amount <= hold amount
	Key    string
	Actor  string
}

// Validate checks the request before it reaches the database.
func (r CaptureRequest) Validate() error {
	if err := CheckKey(r.Key); err != nil {
		return err
	}
	if r.Amount < 0 {
		return fmt.Errorf("%w: a capture cannot be negative, got %s", ErrInvalidAmount, r.Amount)
	}
	if err := checkAmount(r.Amount); err != nil {
		return err
	}
	return nil
}

// Fingerprint is the payload that a repeated key must match.
func (r CaptureRequest) Fingerprint() string {
	return fmt.Sprintf("capture|%d|%d", r.HoldID, r.Amount)
}

// ReleaseRequest gives a whole hold back.
type ReleaseRequest struct {
	HoldID int64
	Key    string
	Actor  string
}

// Validate checks the request before it reaches the database.
func (r ReleaseRequest) Validate() error {
	if err := CheckKey(r.Key); err != nil {
		return err
	}
	return nil
}

// Fingerprint is the payload that a repeated key must match.
func (r ReleaseRequest) Fingerprint() string {
	return fmt.Sprintf("release|%d", r.HoldID)
}
