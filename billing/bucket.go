package billing

import "fmt"

// Bucket names one of an account's two separate balances.
// Nothing ever moves between buckets implicitly.
type Bucket string

const (
	// BucketCredit is official model Credit; it pays official routes.
	BucketCredit Bucket = "credit"
	// BucketRouted is the routed balance; it pays routed (lower-cost) routes.
	BucketRouted Bucket = "routed"
)

// Buckets lists every bucket in display order.
var Buckets = []Bucket{BucketCredit, BucketRouted}

// ParseBucket accepts "credit" or "routed".
func ParseBucket(s string) (Bucket, error) {
	switch b := Bucket(s); b {
	case BucketCredit, BucketRouted:
		return b, nil
	}
	return "", fmt.Errorf("unknown bucket %q: use credit or routed", s)
}

// Balance is one bucket's state. Available is what a new hold may take.
type Balance struct {
	Bucket    Bucket
	Posted    Money
	Held      Money
	Available Money
	// Debt is what a refund took back that had already been spent: the
	// account owes it, no new hold is placed while any bucket has debt, and
	// the next money in pays it first.
	Debt Money
}

// Balances holds both buckets of one account.
type Balances map[Bucket]Balance

// Debt is what the account owes across its buckets.
func (b Balances) Debt() Money {
	var d Money
	for _, x := range b {
		d += x.Debt
	}
	return d
}
