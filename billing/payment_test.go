package billing

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckPayments(t *testing.T) {
	pay := Payment{Provider: ProviderStars, ChargeID: "c1", AccountID: 1, Bucket: BucketCredit, Amount: 5 * Micro, Refunded: 5 * Micro}
	good := PaymentAudit{Payment: pay, CreditEntries: 1, Credited: 5 * Micro, CreditAccount: 1, CreditBucket: BucketCredit, Reversed: 5 * Micro}
	if v := Check(Audit{Payments: []PaymentAudit{good}}); len(v) != 0 {
		t.Fatalf("a consistent payment: %v", v)
	}
	for name, tc := range map[string]struct {
		mut  func(*Audit)
		want string
	}{
		"no entry":        {func(a *Audit) { a.Payments[0].CreditEntries = 0 }, "0 credit entries"},
		"other amount":    {func(a *Audit) { a.Payments[0].Credited = Micro }, "its entry credits $1.00"},
		"reversal short":  {func(a *Audit) { a.Payments[0].Reversed = Micro }, "refund entries reverse $1.00"},
		"orphan top-up":   {func(a *Audit) { a.OrphanPayments = []Entry{{ID: 9, Kind: KindTopup, Reference: "stars:x"}} }, "names no payment"},
		"debt vs entries": {func(a *Audit) { a.Buckets = []BucketAudit{{AccountID: 1, Bucket: BucketCredit, Debt: Micro}} }, "debt $1.00 but entries' debt sums to $0.00"},
	} {
		a := Audit{Payments: []PaymentAudit{good}}
		tc.mut(&a)
		v := Check(a)
		if len(v) != 1 || !strings.Contains(v[0].String(), tc.want) {
			t.Errorf("%s: violations %v, want one saying %q", name, v, tc.want)
		}
	}
}

func TestLimitPolicy(t *testing.T) {
	p := LimitPolicy{Max: Limits{Daily: 50 * Micro}}
	l, err := p.Resolve(Limits{}, "daily", 2*Micro)
	if err != nil || l.Daily != 2*Micro {
		t.Fatalf("daily 2.00 = %+v, %v", l, err)
	}
	if _, err := p.Resolve(l, "daily", 60*Micro); !errors.Is(err, ErrInvalidAmount) {
		t.Fatalf("above the maximum = %v, want ErrInvalidAmount", err)
	}
	if l, _ := p.Resolve(l, "daily", -1); l.Daily != 50*Micro {
		t.Fatalf("off with a maximum = %+v, want the maximum", l)
	}
	if l, _ := p.Resolve(l, "monthly", -1); l.Monthly != 0 {
		t.Fatalf("monthly off without a maximum = %+v, want none", l)
	}
	if _, err := p.Resolve(l, "weekly", Micro); err == nil {
		t.Fatal("weekly accepted")
	}
}

func TestParseWelcome(t *testing.T) {
	w, err := ParseWelcome("routed:0.10")
	if err != nil || w.Bucket != BucketRouted || w.Amount != 100_000 {
		t.Fatalf("routed:0.10 = %+v, %v", w, err)
	}
	for _, bad := range []string{"routed", "gold:1", "routed:-1", "routed:abc", "credit:5000"} {
		if _, err := ParseWelcome(bad); err == nil {
			t.Errorf("ParseWelcome(%q) accepted", bad)
		}
	}
}
