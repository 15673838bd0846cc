package billing

import (
	"fmt"
	"sort"
	"time"
)

// BucketAudit is one bucket's stored balance beside what the ledger and the
// open holds say it should be.
type BucketAudit struct {
	AccountID   AccountID
	Bucket      Bucket
	Posted      Money // stored
	Held        Money // stored
	EntryPosted Money // sum of entries' PostedDelta
	EntryHeld   Money // sum of entries' HeldDelta
	OpenHolds   Money // sum of open holds' amounts
	Debt        Money // stored
	EntryDebt   Money // sum of entries' DebtDelta
}

// PaymentAudit is one payment beside the entries that credit and reverse it.
type PaymentAudit struct {
	Payment
	CreditEntries int   // top-up entries with the payment's reference (want 1)
	Credited      Money // their Amount
	CreditAccount AccountID
	CreditBucket  Bucket
	Reversed      Money // -Amount of its refund entries
}

// HoldAudit is one hold beside the entries that name it.
type HoldAudit struct {
	Hold
	HoldEntries    int
	CaptureEntries int
	ReleaseEntries int
	EntryHeld      Money // net HeldDelta of the hold's entries
	EntryCaptured  Money // -PostedDelta of the hold's capture entries
}

// Audit is a snapshot of the ledger read in one transaction.
type Audit struct {
	At      time.Time
	Buckets []BucketAudit
	Holds   []HoldAudit
	// Payments and OrphanPayments: payment top-ups whose reference names no
	// payment (by their entry keys).
	Payments       []PaymentAudit
	OrphanPayments []Entry
}

// Violation is one broken invariant, named for an operator.
type Violation struct {
	AccountID AccountID
	Bucket    Bucket
	HoldID    int64
	Problem   string
}

func (v Violation) String() string {
	where := fmt.Sprintf("account %d", v.AccountID)
	if v.Bucket != "" {
		where += " " + string(v.Bucket)
	}
	if v.HoldID != 0 {
		where += fmt.Sprintf(" hold %d", v.HoldID)
	}
	return where + ": " + v.Problem
}

// Check verifies the ledger's invariants on an audit snapshot:
// per account and bucket, posted equals the sum of posted entries and held the
// sum of open holds (and of held entries), available is never negative; per
// hold, captured <= held, it was placed once and resolved at most once, its
// entries agree with its status, and no open hold is past its time to live.
func Check(a Audit) []Violation {
	var out []Violation
	add := func(acc AccountID, b Bucket, hold int64, format string, args ...any) {
		out = append(out, Violation{AccountID: acc, Bucket: b, HoldID: hold, Problem: fmt.Sprintf(format, args...)})
	}
	for _, b := range a.Buckets {
		if b.Posted != b.EntryPosted {
			add(b.AccountID, b.Bucket, 0, "posted %s but posted entries sum to %s", b.Posted, b.EntryPosted)
		}
		if b.Held != b.OpenHolds {
			add(b.AccountID, b.Bucket, 0, "held %s but open holds sum to %s", b.Held, b.OpenHolds)
		}
		if b.Held != b.EntryHeld {
			add(b.AccountID, b.Bucket, 0, "held %s but hold entries sum to %s", b.Held, b.EntryHeld)
		}
		if b.Held < 0 {
			add(b.AccountID, b.Bucket, 0, "held is negative: %s", b.Held)
		}
		if avail, err := Sub(b.Posted, b.Held); err != nil {
			add(b.AccountID, b.Bucket, 0, "available overflows: %v", err)
		} else if avail < 0 {
			add(b.AccountID, b.Bucket, 0, "available is negative: %s", avail)
		}
		if b.Debt != b.EntryDebt {
			add(b.AccountID, b.Bucket, 0, "debt %s but entries' debt sums to %s", b.Debt, b.EntryDebt)
		}
		if b.Debt < 0 {
			add(b.AccountID, b.Bucket, 0, "debt is negative: %s", b.Debt)
		}
	}
	for _, p := range a.Payments {
		bad := func(format string, args ...any) {
			add(p.AccountID, p.Bucket, 0, "payment "+p.Reference()+": "+format, args...)
		}
		if p.CreditEntries != 1 {
			bad("%d credit entries, want 1", p.CreditEntries)
		} else if p.Credited != p.Amount || p.CreditAccount != p.AccountID || p.CreditBucket != p.Bucket {
			bad("paid %s to %s but its entry credits %s to account %d %s", p.Amount, p.Bucket, p.Credited, p.CreditAccount, p.CreditBucket)
		}
		if p.Reversed != p.Refunded {
			bad("refunded %s but refund entries reverse %s", p.Refunded, p.Reversed)
		}
		if p.Refunded < 0 || p.Refunded > p.Amount {
			bad("refunded %s of %s", p.Refunded, p.Amount)
		}
	}
	for _, e := range a.OrphanPayments {
		add(e.AccountID, e.Bucket, 0, "entry %d (%s %s) names no payment", e.ID, e.Kind, e.Reference)
	}
	for _, h := range a.Holds {
		bad := func(format string, args ...any) { add(h.AccountID, h.Bucket, h.ID, format, args...) }
		if h.Captured < 0 || h.Captured > h.Amount {
			bad("captured %s of a %s hold", h.Captured, h.Amount)
		}
		if h.HoldEntries != 1 {
			bad("%d hold entries, want 1", h.HoldEntries)
		}
		if h.CaptureEntries > 1 || h.ReleaseEntries > 1 {
			bad("resolved more than once (%d captures, %d releases)", h.CaptureEntries, h.ReleaseEntries)
		}
		if h.EntryCaptured != h.Captured {
			bad("captured %s but capture entries say %s", h.Captured, h.EntryCaptured)
		}
		switch h.Status {
		case HoldOpen:
			if h.CaptureEntries+h.ReleaseEntries > 0 {
				bad("open but has resolution entries")
			}
			if h.EntryHeld != h.Amount {
				bad("open for %s but its entries hold %s", h.Amount, h.EntryHeld)
			}
			if !a.At.Before(h.ExpiresAt) {
				bad("open past its time to live (expired %s)", h.ExpiresAt.UTC().Format(time.RFC3339))
			}
		case HoldCaptured, HoldReleased, HoldExpired:
			if h.EntryHeld != 0 {
				bad("%s but its entries still hold %s", h.Status, h.EntryHeld)
			}
			if h.Status == HoldCaptured && h.CaptureEntries != 1 {
				bad("captured without a capture entry")
			}
			if h.Status != HoldCaptured && (h.CaptureEntries != 0 || h.ReleaseEntries != 1) {
				bad("%s but has %d captures and %d releases", h.Status, h.CaptureEntries, h.ReleaseEntries)
			}
		default:
			bad("unknown status %q", h.Status)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].AccountID != out[j].AccountID {
			return out[i].AccountID < out[j].AccountID
		}
		return out[i].HoldID < out[j].HoldID
	})
	return out
}
