package billing_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// The stores' conformance suite checks real ledgers; these cases build the
// corrupt states a database's constraints would make hard to reach.
func TestCheck(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	okHold := func(status billing.HoldStatus) billing.HoldAudit {
		h := billing.HoldAudit{Hold: billing.Hold{ID: 7, AccountID: 1, Bucket: billing.BucketCredit, Amount: 100, Status: status,
			ExpiresAt: now.Add(time.Minute)}, HoldEntries: 1}
		switch status {
		case billing.HoldOpen:
			h.EntryHeld = 100
		case billing.HoldCaptured:
			h.Captured, h.EntryCaptured, h.CaptureEntries, h.ReleaseEntries = 60, 60, 1, 1
		default:
			h.ReleaseEntries = 1
		}
		return h
	}
	for _, tc := range []struct {
		name  string
		audit billing.Audit
		want  string
	}{
		{"healthy", billing.Audit{At: now, Buckets: []billing.BucketAudit{{AccountID: 1, Bucket: "credit", Posted: 500, Held: 100, EntryPosted: 500, EntryHeld: 100, OpenHolds: 100}},
			Holds: []billing.HoldAudit{okHold(billing.HoldOpen), okHold(billing.HoldCaptured), okHold(billing.HoldReleased), okHold(billing.HoldExpired)}}, ""},
		{"posted drift", billing.Audit{At: now, Buckets: []billing.BucketAudit{{AccountID: 1, Bucket: "credit", Posted: 501, EntryPosted: 500}}}, "posted $0.000501 but posted entries sum to $0.000500"},
		{"held drift", billing.Audit{At: now, Buckets: []billing.BucketAudit{{AccountID: 1, Bucket: "routed", Posted: 500, Held: 100, EntryPosted: 500, EntryHeld: 100}}}, "held $0.000100 but open holds sum to $0.00"},
		{"overdraft", billing.Audit{At: now, Buckets: []billing.BucketAudit{{AccountID: 1, Bucket: "credit", Posted: 50, Held: 100, EntryPosted: 50, EntryHeld: 100, OpenHolds: 100}}}, "available is negative: -$0.00005"},
		{"resolved twice", billing.Audit{At: now, Holds: []billing.HoldAudit{func() billing.HoldAudit {
			h := okHold(billing.HoldReleased)
			h.ReleaseEntries, h.EntryHeld = 2, -100
			return h
		}()}}, "resolved more than once"},
		{"over-captured", billing.Audit{At: now, Holds: []billing.HoldAudit{func() billing.HoldAudit {
			h := okHold(billing.HoldCaptured)
			h.Captured, h.EntryCaptured = 150, 150
			return h
		}()}}, "captured $0.000150 of a $0.000100 hold"},
		{"past ttl", billing.Audit{At: now.Add(time.Hour), Holds: []billing.HoldAudit{okHold(billing.HoldOpen)}}, "open past its time to live"},
		{"capture entry missing", billing.Audit{At: now, Holds: []billing.HoldAudit{func() billing.HoldAudit {
			h := okHold(billing.HoldCaptured)
			h.CaptureEntries, h.EntryCaptured = 0, 0
			return h
		}()}}, "captured without a capture entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := billing.Check(tc.audit)
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("Check = %v, want nothing", got)
				}
				return
			}
			for _, v := range got {
				if strings.Contains(v.String(), tc.want) {
					return
				}
			}
			t.Fatalf("Check = %v, want a violation containing %q", got, tc.want)
		})
	}
}
