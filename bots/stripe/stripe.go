// Package stripe takes payments through Stripe Checkout, on stripe-go: a
// top-up offer becomes a Checkout Session (its metadata names the account,
// bucket, amount and the offer's nonce; an idempotency key per offer), and
// the webhook at POST /stripe/webhook credits a paid session exactly once
// (keyed by the session id) and reverses refunds.
//
// The webhook verifies Stripe's signature with the endpoint secret through
// stripe-go's webhook package, refusing a bad signature or a timestamp
// outside the tolerance with 400. It answers 2xx only after the ledger has
// committed; a failure that may pass (the database, a refund that arrives
// before its payment) is answered 500 so that Stripe retries, and replays
// change nothing. Events of other types are acknowledged and ignored.
package stripe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	stripego "github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
)

// WebhookPath is where Mount serves the webhook; DonePath and CancelledPath
// are the pages Checkout sends the payer back to.
const (
	WebhookPath   = "/stripe/webhook"
	DonePath      = "/stripe/done"
	CancelledPath = "/stripe/cancelled"
)

// Config configures Checkout.
type Config struct {
	SecretKey     string // sk_live_... or sk_test_...
	WebhookSecret string // whsec_..., the endpoint's signing secret
	// APIURL is another base for Stripe's API (tests, proxies); "" for Stripe's.
	APIURL     string
	HTTPClient *http.Client
	// SuccessURL and CancelURL are where Checkout sends the payer back.
	SuccessURL, CancelURL string
	// Tolerance bounds a signature's age (default 5 min, Stripe's own).
	Tolerance time.Duration
	Log       *slog.Logger
}

// String describes the configuration without its secrets.
func (c Config) String() string {
	api := c.APIURL
	if api == "" {
		api = stripego.APIURL
	}
	return fmt.Sprintf("stripe.Config{api: %s, keys redacted}", api)
}

// LogValue keeps the keys out of logs.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Validate checks the configuration without the network.
func (c Config) Validate() error {
	if !strings.HasPrefix(c.SecretKey, "sk_") && !strings.HasPrefix(c.SecretKey, "rk_") {
		return errors.New("STRIPE_SECRET_KEY must be a secret or restricted key (sk_... or rk_...)")
	}
	if !strings.HasPrefix(c.WebhookSecret, "whsec_") {
		return errors.New("STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret (whsec_...)")
	}
	for name, u := range map[string]string{"STRIPE_API_URL": c.APIURL, "success URL": c.SuccessURL, "cancel URL": c.CancelURL} {
		if u == "" && name == "STRIPE_API_URL" {
			continue
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("%s must be an http(s) URL, got %q", name, u)
		}
	}
	return nil
}

// Payer is what the webhook needs of the conversation.
type Payer interface {
	PaymentNotice(ctx context.Context, pd bots.PaymentDone) error
	RefundNotice(ctx context.Context, provider, ref string, total billing.Money) error
}

var (
	_ Payer         = (*bots.Conversation)(nil)
	_ bots.Checkout = (*Checkout)(nil)
	_ bots.Refunder = (*Checkout)(nil)
)

// Checkout is the Stripe Checkout provider.
type Checkout struct {
	cfg    Config
	client *stripego.Client
	payer  Payer
	log    *slog.Logger
}

// New makes a Checkout; payer is told of payments and refunds.
func New(cfg Config, payer Payer) (*Checkout, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if payer == nil {
		return nil, errors.New("stripe: no payer")
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = webhook.DefaultTolerance
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	backend := &stripego.BackendConfig{HTTPClient: hc, LeveledLogger: &stripego.LeveledLogger{Level: stripego.LevelNull}}
	if cfg.APIURL != "" {
		backend.URL = stripego.String(strings.TrimRight(cfg.APIURL, "/"))
	}
	backends := &stripego.Backends{
		API:     stripego.GetBackendWithConfig(stripego.APIBackend, backend),
		Connect: stripego.GetBackendWithConfig(stripego.ConnectBackend, backend),
		Uploads: stripego.GetBackendWithConfig(stripego.UploadsBackend, backend),
	}
	return &Checkout{cfg: cfg, client: stripego.NewClient(cfg.SecretKey, stripego.WithBackends(backends)), payer: payer, log: cfg.Log}, nil
}

// cents turns a whole-cent amount into Stripe's unit.
func cents(m billing.Money) int64 { return int64(m) / 10_000 }

// CreateCheckout implements bots.Checkout: one Checkout Session per offer
// (the offer's nonce is the idempotency key, so a retried call makes none).
func (c *Checkout) CreateCheckout(ctx context.Context, o billing.Offer) (string, error) {
	if o.Amount%10_000 != 0 {
		return "", fmt.Errorf("stripe: %s is not a whole number of cents", o.Amount)
	}
	meta := map[string]string{"account": strconv.FormatInt(int64(o.AccountID), 10), "bucket": string(o.Bucket),
		"amount_micros": strconv.FormatInt(int64(o.Amount), 10), "nonce": o.Nonce}
	name := "forgebot Credit top-up"
	if o.Bucket == billing.BucketRouted {
		name = "forgebot routed balance top-up"
	}
	p := &stripego.CheckoutSessionCreateParams{
		Mode:              stripego.String(string(stripego.CheckoutSessionModePayment)),
		ClientReferenceID: stripego.String(strconv.FormatInt(int64(o.AccountID), 10)),
		SuccessURL:        stripego.String(c.cfg.SuccessURL),
		CancelURL:         stripego.String(c.cfg.CancelURL),
		Metadata:          meta,
		LineItems: []*stripego.CheckoutSessionCreateLineItemParams{{
			Quantity: stripego.Int64(1),
			PriceData: &stripego.CheckoutSessionCreateLineItemPriceDataParams{
				Currency: stripego.String("usd"), UnitAmount: stripego.Int64(cents(o.Amount)),
				ProductData: &stripego.CheckoutSessionCreateLineItemPriceDataProductDataParams{Name: stripego.String(name)},
			},
		}},
		PaymentIntentData: &stripego.CheckoutSessionCreatePaymentIntentDataParams{Metadata: meta},
		ExpiresAt:         stripego.Int64(o.ExpiresAt.Unix()),
	}
	p.SetIdempotencyKey("forgebot-offer-" + o.Nonce)
	s, err := c.client.V1CheckoutSessions.Create(ctx, p)
	if err != nil {
		return "", fmt.Errorf("stripe: create checkout session: %w", redact(err))
	}
	if s.URL == "" {
		return "", errors.New("stripe: the checkout session came without a URL")
	}
	return s.URL, nil
}

// Refund implements bots.Refunder (an admin's /refund): what is left of the
// payment is refunded at Stripe through its payment intent, with an
// idempotency key per payment, so a repeated /refund makes one refund. The
// charge.refunded event that follows finds the credit reversed already.
func (c *Checkout) Refund(ctx context.Context, p billing.Payment, _ billing.Identity) error {
	if p.Provider != billing.ProviderStripe {
		return fmt.Errorf("stripe refunds only Stripe payments, not %s", p.Provider)
	}
	if p.ExternalRef == "" {
		return errors.New("the payment's payment intent is not known")
	}
	rest := p.Amount - p.Refunded
	if rest <= 0 || rest%10_000 != 0 {
		return fmt.Errorf("%s is not a whole number of cents to refund", rest)
	}
	params := &stripego.RefundCreateParams{PaymentIntent: stripego.String(p.ExternalRef), Amount: stripego.Int64(cents(rest)),
		Reason: stripego.String(string(stripego.RefundReasonRequestedByCustomer)), Metadata: map[string]string{"session": p.ChargeID}}
	params.SetIdempotencyKey(fmt.Sprintf("forgebot-refund-%s-%d", p.ChargeID, int64(p.Refunded)))
	if _, err := c.client.V1Refunds.Create(ctx, params); err != nil {
		var se *stripego.Error
		if errors.As(err, &se) && se.Code == stripego.ErrorCodeChargeAlreadyRefunded {
			return nil // refunded at Stripe before; the ledger catches up
		}
		return fmt.Errorf("stripe: %w", redact(err))
	}
	return nil
}

// redact keeps only the Stripe error's type, code and message.
func redact(err error) error {
	var se *stripego.Error
	if errors.As(err, &se) {
		return fmt.Errorf("%s %s (HTTP %d): %s", se.Type, se.Code, se.HTTPStatusCode, se.Msg)
	}
	return err
}

// Mount serves the webhook on mux.
func (c *Checkout) Mount(mux *http.ServeMux) {
	mux.Handle("POST "+WebhookPath, c)
	page := func(text string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(text + "\n"))
		}
	}
	mux.Handle("GET "+DonePath, page("Thank you: your payment is being confirmed. forgebot tells you in chat when it lands."))
	mux.Handle("GET "+CancelledPath, page("The payment was cancelled; nothing was charged. Send /topup in chat to try again."))
}

// maxBody bounds a webhook body (Stripe's events are a few KiB).
const maxBody = 1 << 20

// ServeHTTP is the webhook.
func (c *Checkout) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "body too large or unreadable", http.StatusBadRequest)
		return
	}
	// API versions: only stable fields are read (ids, metadata, statuses,
	// amounts), so an endpoint pinned to another version is accepted.
	ev, err := webhook.ConstructEventWithOptions(body, r.Header.Get("Stripe-Signature"), c.cfg.WebhookSecret,
		webhook.ConstructEventOptions{Tolerance: c.cfg.Tolerance, IgnoreAPIVersionMismatch: true})
	if err != nil {
		c.log.Warn("stripe: webhook refused", "err", err)
		http.Error(w, "invalid signature", http.StatusBadRequest)
		return
	}
	status, err := c.handle(r.Context(), ev)
	if err != nil {
		c.log.Error("stripe: webhook event not applied", "event_id", ev.ID, "type", string(ev.Type), "status", status, "err", err)
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"received":true}`))
}

// handle applies one verified event; it returns the HTTP status to answer.
func (c *Checkout) handle(ctx context.Context, ev stripego.Event) (int, error) {
	ctx = context.WithoutCancel(ctx) // a commit must not be cut by Stripe hanging up
	switch ev.Type {
	case "checkout.session.completed", "checkout.session.async_payment_succeeded":
		var s stripego.CheckoutSession
		if err := json.Unmarshal(ev.Data.Raw, &s); err != nil {
			return http.StatusBadRequest, fmt.Errorf("parse session: %w", err)
		}
		if s.PaymentStatus != stripego.CheckoutSessionPaymentStatusPaid {
			c.log.Info("stripe: session not paid yet", "session_id", s.ID, "payment_status", string(s.PaymentStatus))
			return http.StatusOK, nil // async payments come back with async_payment_succeeded
		}
		m := s.Metadata
		payload := fmt.Sprintf("fb1:%s:%s:%s:%s", m["account"], m["bucket"], m["amount_micros"], m["nonce"])
		pd := bots.PaymentDone{Provider: billing.ProviderStripe, ChargeID: s.ID, Payload: payload,
			Currency: string(s.Currency), Total: s.AmountTotal}
		if s.PaymentIntent != nil {
			pd.ExternalRef = s.PaymentIntent.ID
		}
		if err := c.payer.PaymentNotice(ctx, pd); err != nil {
			if errors.Is(err, billing.ErrOfferMismatch) {
				return http.StatusBadRequest, err
			}
			return http.StatusInternalServerError, err
		}
		return http.StatusOK, nil
	case "charge.refunded":
		var ch stripego.Charge
		if err := json.Unmarshal(ev.Data.Raw, &ch); err != nil {
			return http.StatusBadRequest, fmt.Errorf("parse charge: %w", err)
		}
		if ch.PaymentIntent == nil || ch.PaymentIntent.ID == "" {
			return http.StatusOK, nil // not a Checkout payment of ours
		}
		total := billing.Money(ch.AmountRefunded) * 10_000
		if total <= 0 || !strings.EqualFold(string(ch.Currency), "usd") {
			return http.StatusOK, nil
		}
		err := c.payer.RefundNotice(ctx, billing.ProviderStripe, ch.PaymentIntent.ID, total)
		switch {
		case err == nil:
			return http.StatusOK, nil
		case errors.Is(err, billing.ErrUnknownPayment):
			// Its payment has not landed yet (events come in any order): ask
			// Stripe to send it again later.
			return http.StatusInternalServerError, err
		case errors.Is(err, billing.ErrAlreadyRefunded):
			return http.StatusOK, nil
		}
		return http.StatusInternalServerError, err
	}
	return http.StatusOK, nil
}
