package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

func (b *bundle) offer(t *testing.T, acc billing.AccountID, nonce string, amount billing.Money) billing.Offer {
	t.Helper()
	o := billing.Offer{Nonce: nonce, Provider: billing.ProviderStars, AccountID: acc, Payer: billing.Identity{Platform: "telegram", ExternalID: "42"},
		Bucket: billing.BucketCredit, Amount: amount, CreatedAt: b.clock.Now(), ExpiresAt: b.clock.Now().Add(time.Hour)}
	if err := b.store.CreateOffer(b.ctx, o); err != nil {
		t.Fatalf("CreateOffer: %v", err)
	}
	return o
}

func testPayments(t *testing.T, h Harness) {
	b := setup(t, h)
	acc, err := b.store.EnsureAccount(b.ctx, billing.Identity{Platform: "telegram", ExternalID: "42"})
	if err != nil {
		t.Fatal(err)
	}
	o := b.offer(t, acc, "nonce-0123456789abcdef", 5*billing.Micro)
	got, err := b.store.Offer(b.ctx, o.Nonce)
	if err != nil || got.Amount != o.Amount || got.Payer != o.Payer || got.PaidBy != "" {
		t.Fatalf("Offer = %+v, %v; want the stored offer, unpaid", got, err)
	}
	if _, err := b.store.Offer(b.ctx, "no-such-nonce-000000"); !errors.Is(err, billing.ErrNotFound) {
		t.Fatalf("Offer(unknown) = %v, want ErrNotFound", err)
	}
	req := billing.PaymentRequest{Provider: billing.ProviderStars, ChargeID: "charge-1", OfferNonce: o.Nonce,
		AccountID: acc, Bucket: billing.BucketCredit, Amount: 5 * billing.Micro, Actor: "telegram:42"}

	// A payment that does not match its offer changes nothing.
	for name, bad := range map[string]billing.PaymentRequest{
		"other amount":  {Provider: req.Provider, ChargeID: "charge-x", OfferNonce: o.Nonce, AccountID: acc, Bucket: req.Bucket, Amount: 6 * billing.Micro},
		"other bucket":  {Provider: req.Provider, ChargeID: "charge-x", OfferNonce: o.Nonce, AccountID: acc, Bucket: billing.BucketRouted, Amount: req.Amount},
		"unknown offer": {Provider: req.Provider, ChargeID: "charge-x", OfferNonce: "nonce-unknown-000000", AccountID: acc, Bucket: req.Bucket, Amount: req.Amount},
	} {
		if _, _, err := b.store.CreditPayment(b.ctx, bad); !errors.Is(err, billing.ErrOfferMismatch) {
			t.Errorf("%s: CreditPayment = %v, want ErrOfferMismatch", name, err)
		}
	}
	if bal := b.balance(t, acc, billing.BucketCredit); bal.Posted != 0 {
		t.Fatalf("refused payments credited %s", bal.Posted)
	}

	// The same charge from many goroutines is credited once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for range 8 {
		wg.Go(func() {
			p, e, err := b.store.CreditPayment(b.ctx, req)
			if err != nil {
				t.Errorf("CreditPayment: %v", err)
				return
			}
			if e.Reference != "stars:charge-1" || e.Kind != billing.KindTopup || p.EntryID != e.ID {
				t.Errorf("payment %+v entry %+v: want a topup entry naming stars:charge-1", p, e)
			}
			mu.Lock()
			defer mu.Unlock()
			if !p.Replayed {
				fresh++
			}
		})
	}
	wg.Wait()
	if fresh != 1 {
		t.Fatalf("%d calls credited the charge, want 1", fresh)
	}
	if bal := b.balance(t, acc, billing.BucketCredit); bal.Posted != 5*billing.Micro {
		t.Fatalf("posted %s after one payment of $5.00", bal.Posted)
	}
	if got, _ := b.store.Offer(b.ctx, o.Nonce); got.PaidBy != "charge-1" {
		t.Fatalf("offer paid by %q, want charge-1", got.PaidBy)
	}
	// The same charge with another payload is refused; another charge for a paid offer too.
	changed := req
	changed.Amount = 4 * billing.Micro
	if _, _, err := b.store.CreditPayment(b.ctx, changed); !errors.Is(err, billing.ErrIdempotencyConflict) {
		t.Fatalf("changed replay = %v, want ErrIdempotencyConflict", err)
	}
	second := req
	second.ChargeID = "charge-2"
	if _, _, err := b.store.CreditPayment(b.ctx, second); !errors.Is(err, billing.ErrOfferMismatch) {
		t.Fatalf("a second charge for a paid offer = %v, want ErrOfferMismatch", err)
	}
	if p, err := b.store.Payment(b.ctx, billing.ProviderStars, "charge-1"); err != nil || p.Amount != 5*billing.Micro {
		t.Fatalf("Payment = %+v, %v", p, err)
	}
	if _, err := b.store.Payment(b.ctx, billing.ProviderStars, "nope"); !errors.Is(err, billing.ErrUnknownPayment) {
		t.Fatalf("Payment(unknown) = %v, want ErrUnknownPayment", err)
	}
	// A payment without an offer (Stripe names its session) is credited too.
	if _, _, err := b.store.CreditPayment(b.ctx, billing.PaymentRequest{Provider: billing.ProviderStripe, ChargeID: "cs_test_1",
		ExternalRef: "pi_1", AccountID: acc, Bucket: billing.BucketRouted, Amount: billing.Micro, Actor: "stripe"}); err != nil {
		t.Fatal(err)
	}
	if p, err := b.store.Payment(b.ctx, billing.ProviderStripe, "pi_1"); err != nil || p.ChargeID != "cs_test_1" {
		t.Fatalf("Payment by external ref = %+v, %v", p, err)
	}
	// Payment keys are reserved: a caller's key cannot pose as one.
	if _, err := b.store.Post(b.ctx, billing.PostRequest{AccountID: acc, Bucket: billing.BucketCredit, Kind: billing.KindTopup,
		Amount: 1, Key: "pay:stars:forged"}); !errors.Is(err, billing.ErrBadKey) {
		t.Fatalf("Post with a payment key = %v, want ErrBadKey", err)
	}
	b.mustCheck(t)
}

func testRefundDebt(t *testing.T, h Harness) {
	b := setup(t, h)
	acc, err := b.store.EnsureAccount(b.ctx, billing.Identity{Platform: "telegram", ExternalID: "42"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.store.CreditPayment(b.ctx, billing.PaymentRequest{Provider: billing.ProviderStars, ChargeID: "c1",
		AccountID: acc, Bucket: billing.BucketCredit, Amount: 5 * billing.Micro, Actor: "telegram:42"}); err != nil {
		t.Fatal(err)
	}
	// Spend $3.00 of it.
	hold, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: 4 * billing.Micro,
		TTL: time.Hour, Key: "h1", Reference: "run:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: hold.ID, Amount: 3 * billing.Micro, Key: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.store.RefundPayment(b.ctx, billing.RefundRequest{Provider: billing.ProviderStars, ChargeID: "nope", Actor: "admin"}); !errors.Is(err, billing.ErrUnknownPayment) {
		t.Fatalf("refund of an unknown charge = %v, want ErrUnknownPayment", err)
	}
	p, e, err := b.store.RefundPayment(b.ctx, billing.RefundRequest{Provider: billing.ProviderStars, ChargeID: "c1", Actor: "telegram:1"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Refunded != 5*billing.Micro || e.Kind != billing.KindRefund || e.Amount != -5*billing.Micro ||
		e.PostedDelta != -2*billing.Micro || e.DebtDelta != 3*billing.Micro || e.Actor != "telegram:1" {
		t.Fatalf("refund = %+v, %+v; want $5.00 reversed: $2.00 taken back, $3.00 owed", p, e)
	}
	bal := b.balance(t, acc, billing.BucketCredit)
	if bal.Posted != 0 || bal.Debt != 3*billing.Micro || bal.Available != 0 {
		t.Fatalf("after the refund: %+v, want nothing posted and $3.00 debt", bal)
	}
	b.mustCheck(t)
	if _, _, err := b.store.RefundPayment(b.ctx, billing.RefundRequest{Provider: billing.ProviderStars, ChargeID: "c1", Actor: "admin"}); !errors.Is(err, billing.ErrAlreadyRefunded) {
		t.Fatalf("second refund = %v, want ErrAlreadyRefunded", err)
	}
	// Debt refuses new holds, on either bucket, even with money there.
	b.fund(t, "telegram:42", billing.BucketRouted, billing.Micro)
	for _, bucket := range billing.Buckets {
		if _, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: bucket, Amount: 1, TTL: time.Hour,
			Key: "h-debt-" + string(bucket), Reference: "run:2"}); !errors.Is(err, billing.ErrInDebt) {
			t.Fatalf("hold on %s while in debt = %v, want ErrInDebt", bucket, err)
		}
	}
	// Money in pays the debt first.
	e, err = b.store.Post(b.ctx, billing.PostRequest{AccountID: acc, Bucket: billing.BucketCredit, Kind: billing.KindTopup,
		Amount: 4 * billing.Micro, Key: "top-2"})
	if err != nil || e.DebtDelta != -3*billing.Micro || e.PostedDelta != billing.Micro {
		t.Fatalf("top-up in debt = %+v, %v; want $3.00 to the debt and $1.00 posted", e, err)
	}
	if bal := b.balance(t, acc, billing.BucketCredit); bal.Debt != 0 || bal.Available != billing.Micro {
		t.Fatalf("after paying the debt: %+v", bal)
	}
	if _, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: 1, TTL: time.Hour,
		Key: "h-after", Reference: "run:3"}); err != nil {
		t.Fatalf("hold after the debt was paid: %v", err)
	}

	// Stripe-style running totals: each event says the refunded total so far.
	if _, _, err := b.store.CreditPayment(b.ctx, billing.PaymentRequest{Provider: billing.ProviderStripe, ChargeID: "cs_1",
		ExternalRef: "pi_1", AccountID: acc, Bucket: billing.BucketRouted, Amount: 2 * billing.Micro}); err != nil {
		t.Fatal(err)
	}
	for i, step := range []struct {
		total, refunded billing.Money
		replayed        bool
	}{{billing.Micro / 2, billing.Micro / 2, false}, {billing.Micro / 2, billing.Micro / 2, true}, {billing.Micro / 4, billing.Micro / 2, true}, {2 * billing.Micro, 2 * billing.Micro, false}} {
		p, _, err := b.store.RefundPayment(b.ctx, billing.RefundRequest{Provider: billing.ProviderStripe, ChargeID: "pi_1", Total: step.total, Actor: "stripe"})
		if err != nil || p.Refunded != step.refunded || p.Replayed != step.replayed {
			t.Fatalf("step %d: refund total %s = %+v, %v; want refunded %s, replayed %v", i, step.total, p, err, step.refunded, step.replayed)
		}
	}
	if bal := b.balance(t, acc, billing.BucketRouted); bal.Posted != billing.Micro || bal.Debt != 0 {
		t.Fatalf("routed after the Stripe refund: %+v, want the $1.00 funded before", bal)
	}
	b.mustCheck(t)
}

func testWelcomeGrant(t *testing.T, h Harness) {
	b := setup(t, h)
	w := billing.Welcome{Bucket: billing.BucketRouted, Amount: dime}
	tg := billing.Identity{Platform: "telegram", ExternalID: "42"}
	dc := billing.Identity{Platform: "discord", ExternalID: "7"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	grants := 0
	for range 6 {
		wg.Go(func() {
			_, ok, err := b.store.GrantWelcome(b.ctx, tg, w)
			if err != nil {
				t.Errorf("GrantWelcome: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if ok {
				grants++
			}
		})
	}
	wg.Wait()
	if grants != 1 {
		t.Fatalf("%d welcome grants for one identity, want 1", grants)
	}
	acc, _ := b.store.AccountOf(b.ctx, tg)
	// The Discord identity used forgebot first on its own and got a grant...
	if _, ok, err := b.store.GrantWelcome(b.ctx, dc, w); err != nil || !ok {
		t.Fatalf("GrantWelcome(discord) = %v, %v", ok, err)
	}
	// ...it may still be linked (its account holds only that grant), which stays behind.
	if got, err := b.store.LinkIdentity(b.ctx, tg, dc); err != nil || got != acc {
		t.Fatalf("LinkIdentity = %d, %v; want %d", got, err, acc)
	}
	if _, ok, _ := b.store.GrantWelcome(b.ctx, dc, w); ok {
		t.Fatal("a linked identity got a second welcome grant")
	}
	// A new identity linked into a granted account gets none either.
	web := billing.Identity{Platform: "cli", ExternalID: "alice"}
	if _, err := b.store.LinkIdentity(b.ctx, tg, web); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.store.GrantWelcome(b.ctx, web, w); ok {
		t.Fatal("an identity linked into a granted account got a grant")
	}
	if bal := b.balance(t, acc, billing.BucketRouted); bal.Posted != dime {
		t.Fatalf("linked account has %s routed, want one grant of %s", bal.Posted, billing.Money(dime))
	}
	b.mustCheck(t)
}

func testSpendLimits(t *testing.T, h Harness) {
	b := setup(t, h)
	acc := b.fund(t, "telegram:42", billing.BucketCredit, 10*billing.Micro)
	b.fund(t, "telegram:42", billing.BucketRouted, 10*billing.Micro)
	if err := b.store.SetLimits(b.ctx, acc, billing.Limits{Daily: billing.Micro}, "telegram:42"); err != nil {
		t.Fatal(err)
	}
	hold := func(key string, bucket billing.Bucket, amount billing.Money) (billing.Hold, error) {
		return b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: bucket, Amount: amount, TTL: 72 * time.Hour, Key: key, Reference: "run:" + key})
	}
	// 32 concurrent holds of $0.10 against a $1.00 daily limit, across both
	// buckets: exactly ten fit.
	var (
		mu      sync.Mutex
		placed  []billing.Hold
		refused int
		start   = make(chan struct{})
		wg      sync.WaitGroup
	)
	for i := range 32 {
		wg.Go(func() {
			<-start
			h, err := hold(fmt.Sprintf("lim-%d", i), billing.Buckets[i%2], dime)
			mu.Lock()
			defer mu.Unlock()
			var le *billing.LimitError
			switch {
			case err == nil:
				placed = append(placed, h)
			case errors.As(err, &le) && errors.Is(err, billing.ErrSpendLimit) && le.Period == "daily":
				refused++
			default:
				t.Errorf("hold %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(placed) != 10 || refused != 22 {
		t.Fatalf("%d holds placed, %d refused; want 10 and 22", len(placed), refused)
	}
	sp, err := b.store.Spending(b.ctx, acc, billing.Limits{})
	if err != nil || sp.Today != billing.Micro || !sp.Own || sp.Limits.Daily != billing.Micro {
		t.Fatalf("Spending = %+v, %v; want $1.00 today against the own $1.00 limit", sp, err)
	}
	// A settled hold counts at what it captured: capturing $0.02 of one frees $0.08.
	if _, err := b.store.CaptureHold(b.ctx, billing.CaptureRequest{HoldID: placed[0].ID, Amount: 20_000, Key: "cap-0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := hold("after-capture", billing.BucketCredit, 80_000); err != nil {
		t.Fatalf("a hold that fits after a partial capture: %v", err)
	}
	if _, err := hold("one-more", billing.BucketCredit, 1); !errors.Is(err, billing.ErrSpendLimit) {
		t.Fatalf("a hold past the limit = %v, want ErrSpendLimit", err)
	}
	// Tomorrow the day starts over; the monthly limit still counts.
	b.clock.Advance(24 * time.Hour)
	if err := b.store.SetLimits(b.ctx, acc, billing.Limits{Daily: billing.Micro, Monthly: 1_500_000}, "telegram:42"); err != nil {
		t.Fatal(err)
	}
	if _, err := hold("tomorrow", billing.BucketCredit, 500_000); err != nil {
		t.Fatalf("tomorrow's hold: %v", err)
	}
	var le *billing.LimitError
	if _, err := hold("month", billing.BucketCredit, 100_000); !errors.As(err, &le) || le.Period != "monthly" {
		t.Fatalf("hold past the monthly limit = %v, want a monthly LimitError", err)
	}
	// Limits off: no limit (the defaults do not apply to an account that chose).
	if err := b.store.SetLimits(b.ctx, acc, billing.Limits{}, "telegram:42"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: billing.Micro, TTL: 72 * time.Hour,
		Key: "off", Reference: "run:off", DefaultLimits: billing.Limits{Daily: 1}}); err != nil {
		t.Fatalf("hold with limits off: %v", err)
	}
	// Operator defaults apply to accounts that set nothing.
	other := b.fund(t, "telegram:43", billing.BucketCredit, 10*billing.Micro)
	def := billing.Limits{Daily: 300_000}
	for i, want := range []error{nil, nil, nil, billing.ErrSpendLimit} {
		_, err := b.store.PlaceHold(b.ctx, billing.HoldRequest{AccountID: other, Bucket: billing.BucketCredit, Amount: dime, TTL: 72 * time.Hour,
			Key: fmt.Sprintf("def-%d", i), Reference: "run:def", DefaultLimits: def})
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Fatalf("default-limited hold %d = %v, want %v", i, err, want)
		}
	}
	if err := b.store.SetLimits(b.ctx, acc, billing.Limits{Daily: -1}, "x"); !errors.Is(err, billing.ErrInvalidAmount) {
		t.Fatalf("negative limit = %v, want ErrInvalidAmount", err)
	}
	b.mustCheck(t)
}
