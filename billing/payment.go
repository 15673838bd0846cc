package billing

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Providers that take money in. A payment's ledger entry names its provider
// and charge (or session) id in its reference, "stars:CHARGE" or
// "stripe:cs_...", so every top-up can be traced to the money behind it.
const (
	ProviderStars  = "stars"  // Telegram Stars (currency XTR)
	ProviderStripe = "stripe" // Stripe Checkout
	// ProviderTelegramFiat is a Telegram payment through a provider token.
	ProviderTelegramFiat = "telegram"
)

// Sentinel errors of the payment methods.
var (
	// ErrUnknownPayment: no payment with that provider and charge id.
	ErrUnknownPayment = errors.New("unknown payment")
	// ErrAlreadyRefunded: the payment was refunded in full already.
	ErrAlreadyRefunded = errors.New("payment already refunded")
	// ErrInDebt: a refund took back money that was already spent; the
	// account owes it and no new hold is placed until a top-up pays it.
	ErrInDebt = errors.New("account owes money after a refund")
	// ErrOfferMismatch: a payment does not match the offer it names (another
	// account, bucket or amount), or the offer is unknown, expired or paid.
	ErrOfferMismatch = errors.New("payment does not match its offer")
)

// Offer is a top-up a user asked for and has not paid yet: the invoice or
// checkout session carries its Nonce (unguessable), and a payment is only
// accepted when it matches the stored offer.
type Offer struct {
	Nonce     string
	Provider  string
	AccountID AccountID
	Payer     Identity // who asked; a pre-checkout from anyone else is refused
	Bucket    Bucket
	Amount    Money
	Chat      string // where to say the money landed (an opaque, adapter-defined address)
	CreatedAt time.Time
	ExpiresAt time.Time
	PaidBy    string // the charge id that paid it; empty while open
}

// Payment is money that came in through a provider and was credited once.
type Payment struct {
	ID          int64
	Provider    string
	ChargeID    string // telegram_payment_charge_id, or the Checkout Session id
	ExternalRef string // the provider's other id (Stripe's payment intent; Telegram's provider charge id)
	OfferNonce  string
	AccountID   AccountID
	Bucket      Bucket
	Amount      Money
	Refunded    Money
	EntryID     int64 // the top-up entry that credited it
	Actor       string
	CreatedAt   time.Time
	RefundedAt  time.Time

	// Replayed is true when the charge was credited before this call.
	Replayed bool
}

// Reference is what the payment's ledger entries carry: "provider:charge".
func (p Payment) Reference() string { return p.Provider + ":" + p.ChargeID }

// PaymentRequest credits one provider charge to a bucket, exactly once.
type PaymentRequest struct {
	Provider    string
	ChargeID    string
	ExternalRef string
	// OfferNonce names the offer being paid; when set, the account, bucket
	// and amount must match it (ErrOfferMismatch otherwise) and the offer is
	// marked paid in the same transaction. An expired offer is still honoured
	// here: the money has been taken, so it is credited.
	OfferNonce string
	AccountID  AccountID
	Bucket     Bucket
	Amount     Money
	Actor      string
}

// Validate checks the request before it reaches the database.
func (r PaymentRequest) Validate() error {
	if err := checkProviderRef(r.Provider, r.ChargeID); err != nil {
		return err
	}
	if _, err := ParseBucket(string(r.Bucket)); err != nil {
		return err
	}
	if r.AccountID == 0 {
		return fmt.Errorf("%w: a payment needs an account", ErrUnknownAccount)
	}
	if r.Amount <= 0 {
		return fmt.Errorf("%w: a payment must be positive, got %s", ErrInvalidAmount, r.Amount)
	}
	return nil
}

// Fingerprint is what a repeated charge id must match.
func (r PaymentRequest) Fingerprint() string {
	return fmt.Sprintf("payment|%s|%s|%d|%s|%d", r.Provider, r.ChargeID, r.AccountID, r.Bucket, r.Amount)
}

// RefundRequest reverses (part of) a payment's credit.
type RefundRequest struct {
	Provider string
	ChargeID string // the charge id, or the payment's external ref
	// Total is the payment's refunded amount after this refund (Stripe sends
	// the running total); zero means the whole payment. A total at or below
	// what is already reversed changes nothing, so replays and out-of-order
	// events are harmless.
	Total Money
	Actor string
	Note  string
}

// Validate checks the request before it reaches the database.
func (r RefundRequest) Validate() error {
	if err := checkProviderRef(r.Provider, r.ChargeID); err != nil {
		return err
	}
	if r.Total < 0 {
		return fmt.Errorf("%w: a refund total cannot be negative", ErrInvalidAmount)
	}
	return nil
}

func checkProviderRef(provider, charge string) error {
	if provider == "" || strings.ContainsAny(provider, ": ") {
		return fmt.Errorf("payment: bad provider %q", provider)
	}
	if charge == "" || len(charge) > 190 || strings.IndexFunc(charge, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
		return fmt.Errorf("%w: charge id must be 1-190 printable characters", ErrBadKey)
	}
	return nil
}

// Welcome is the grant every new account gets once, e.g. routed:0.10.
type Welcome struct {
	Bucket Bucket
	Amount Money
}

// ParseWelcome reads "bucket:amount" ("routed:0.10"); "" means no grant.
func ParseWelcome(s string) (Welcome, error) {
	if s == "" {
		return Welcome{}, nil
	}
	b, a, ok := strings.Cut(s, ":")
	if !ok {
		return Welcome{}, fmt.Errorf("welcome grant %q: want bucket:amount, like routed:0.10", s)
	}
	bucket, err := ParseBucket(b)
	if err != nil {
		return Welcome{}, fmt.Errorf("welcome grant: %w", err)
	}
	amount, err := ParseMoney(a)
	if err != nil || amount <= 0 || amount > 1000*Micro {
		return Welcome{}, fmt.Errorf("welcome grant %q: want a positive amount up to $1000.00", s)
	}
	return Welcome{Bucket: bucket, Amount: amount}, nil
}

// WelcomeReference marks welcome grants in the ledger. The rule: an account
// gets one welcome grant, ever. It is keyed by the identity that first used
// forgebot, and not given when the identity's account already has one. An
// identity linked into another account brings no grant with it: when its own
// account holds nothing but its unspent welcome grant, the link is allowed
// and that account (with its grant) is left behind, unreachable; the grant is
// never moved or repeated.
const WelcomeReference = "welcome"
