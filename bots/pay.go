package bots

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// Pay is money in from chat: top-up buttons, Telegram Stars invoices, a
// checkout link elsewhere (Stripe), grants, refunds and the limits users set.
// A Conversation without one sends users to the operator (TopUpHint).
type Pay struct {
	Store PayStore
	// Amounts are the top-up buttons; a top-up of any other amount is refused.
	Amounts []billing.Money
	// StarsPerUSD prices Telegram invoices in Stars (XTR); 0 turns Stars off.
	StarsPerUSD int64
	// TelegramFiat: Telegram invoices are in USD through the payment
	// provider whose token the Telegram adapter holds
	// (TELEGRAM_PAYMENT_PROVIDER_TOKEN), instead of Stars.
	TelegramFiat bool
	// Checkout makes a payment link (Stripe Checkout) for platforms without
	// Stars; nil: none.
	Checkout Checkout
	// Refunders give money back at the provider, by provider name.
	Refunders map[string]Refunder
	Welcome   billing.Welcome
	Limits    billing.LimitPolicy
	// LowBalance: a run that leaves its bucket below this says so, once per crossing.
	LowBalance billing.Money
	OfferTTL   time.Duration // how long an invoice or checkout link is honoured at pre-checkout; default 1 h
	Now        func() time.Time
}

// PayStore is what Pay needs of the store.
type PayStore interface {
	billing.Payments
	Post(ctx context.Context, req billing.PostRequest) (billing.Entry, error)
	Account(ctx context.Context, id billing.AccountID) (billing.Account, error)
}

// Checkout makes a hosted payment page for an offer.
type Checkout interface {
	// CreateCheckout returns the URL the payer opens; the provider reports the
	// payment later (a webhook) naming the offer.
	CreateCheckout(ctx context.Context, o billing.Offer) (url string, err error)
}

// Refunder returns a payment at its provider (Telegram's refundStarPayment).
type Refunder interface {
	Refund(ctx context.Context, p billing.Payment, payer billing.Identity) error
}

// Invoice is a payment request a platform renders natively (Telegram's
// sendInvoice). Total is in the currency's smallest unit (Stars for XTR).
type Invoice struct {
	Title       string
	Description string
	Payload     string
	Currency    string
	Label       string
	Total       int64
}

func (p *Pay) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Pay) offerTTL() time.Duration {
	if p.OfferTTL > 0 {
		return p.OfferTTL
	}
	return time.Hour
}

// Stars converts an amount to Stars, rounding up to a whole Star.
func (p *Pay) Stars(m billing.Money) int64 {
	return (int64(m)*p.StarsPerUSD + int64(billing.Micro) - 1) / int64(billing.Micro)
}

var bucketPays = map[billing.Bucket]string{
	billing.BucketCredit: "Credit pays official model routes (the providers' own APIs)",
	billing.BucketRouted: "the routed balance pays routed routes (lower-cost gateways)",
}

// canPay reports whether a user on platform can pay in chat: Stars on
// Telegram, a checkout link anywhere.
func (c *Conversation) canPay(platform string) bool {
	return c.Pay != nil && (c.telegramInvoice(platform) || c.Pay.Checkout != nil)
}

// telegramInvoice reports whether a top-up on platform is a Telegram
// invoice (Stars, or USD through a payment provider).
func (c *Conversation) telegramInvoice(platform string) bool {
	return c.Pay != nil && platform == "telegram" && (c.Pay.StarsPerUSD > 0 || c.Pay.TelegramFiat)
}

// topupButtons are the amount buttons for one bucket (or both when bucket
// is ""), for a user on platform: none where no payment method serves it,
// so no button leads to "payments are not set up".
func (c *Conversation) topupButtons(platform string, bucket billing.Bucket) [][]Button {
	if !c.canPay(platform) || len(c.Pay.Amounts) == 0 {
		return nil
	}
	var rows [][]Button
	for _, b := range billing.Buckets {
		if bucket != "" && b != bucket {
			continue
		}
		var row []Button
		for _, a := range c.Pay.Amounts {
			row = append(row, Button{Label: fmt.Sprintf("%s %s", strings.TrimSuffix(a.String(), ".00"), bucketShort(b)), Data: topupPayload(b, a)})
		}
		rows = append(rows, row)
	}
	return rows
}

func bucketShort(b billing.Bucket) string {
	if b == billing.BucketRouted {
		return "routed"
	}
	return "Credit"
}

// Top-up button payloads are "t:BUCKET:MICROS"; the amount is checked
// against the configured list when pressed.
func topupPayload(b billing.Bucket, a billing.Money) string {
	return fmt.Sprintf("t:%s:%d", b, int64(a))
}

func parseTopup(s string) (billing.Bucket, billing.Money, bool) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] != "t" || len(s) > 60 {
		return "", 0, false
	}
	b, err := billing.ParseBucket(parts[1])
	if err != nil {
		return "", 0, false
	}
	n, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || n <= 0 {
		return "", 0, false
	}
	return b, billing.Money(n), true
}

func (c *Conversation) topupCommand(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	if c.Pay == nil {
		return nil, sayf("Top-ups in chat are not set up on this bot. %s", c.TopUpHint)
	}
	if len(args) == 0 {
		var b strings.Builder
		b.WriteString("Pick a bucket and an amount:\n")
		for _, bk := range billing.Buckets {
			fmt.Fprintf(&b, "• %s: %s.\n", bucketName(bk), bucketPays[bk])
		}
		b.WriteString("Money never moves between buckets. " + c.payMethod(in))
		return []Reply{{View: View{Kind: KindInfo, Title: "Top up", Text: b.String(), Buttons: c.topupButtons(in.Chat.Platform, ""), Private: true}}}, nil
	}
	usage := sayf("Usage: /topup [credit|routed] [AMOUNT], amounts: %s", c.amountList())
	bucket, err := billing.ParseBucket(strings.ToLower(args[0]))
	if err != nil || len(args) > 2 {
		return nil, usage
	}
	if len(args) == 1 {
		return []Reply{{View: View{Kind: KindInfo, Title: "Top up your " + bucketName(bucket), Private: true,
			Text: strings.ToUpper(bucketPays[bucket][:1]) + bucketPays[bucket][1:] + ". " + c.payMethod(in), Buttons: c.topupButtons(in.Chat.Platform, bucket)}}}, nil
	}
	amount, err := billing.ParseMoney(args[1])
	if err != nil {
		return nil, usage
	}
	return c.offer(ctx, in, bucket, amount)
}

func (c *Conversation) amountList() string {
	s := make([]string, len(c.Pay.Amounts))
	for i, a := range c.Pay.Amounts {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func (c *Conversation) payMethod(in Incoming) string {
	switch {
	case in.Chat.Platform == "telegram" && c.Pay.TelegramFiat:
		return "You pay in US dollars in Telegram, through its payment provider."
	case in.Chat.Platform == "telegram" && c.Pay.StarsPerUSD > 0:
		return fmt.Sprintf("You pay in Telegram Stars (%d Stars per $1.00).", c.Pay.StarsPerUSD)
	case c.Pay.Checkout != nil:
		return "You pay on a secure Stripe Checkout page."
	}
	return "Payments are not set up here: " + c.TopUpHint
}

// offer makes an invoice (Telegram Stars) or a checkout link for a top-up.
func (c *Conversation) offer(ctx context.Context, in Incoming, bucket billing.Bucket, amount billing.Money) ([]Reply, error) {
	if c.Pay == nil {
		return nil, sayf("Top-ups in chat are not set up on this bot.")
	}
	listed := false
	for _, a := range c.Pay.Amounts {
		listed = listed || a == amount
	}
	if !listed {
		return nil, sayf("%s is not one of the top-up amounts: %s.", amount, c.amountList())
	}
	invoice := c.telegramInvoice(in.Chat.Platform)
	if !c.canPay(in.Chat.Platform) {
		return nil, sayf("Payments are not set up on this platform. %s", c.TopUpHint)
	}
	acc, err := c.Ledger.EnsureAccount(ctx, in.Identity)
	if err != nil {
		return nil, err
	}
	now := c.Pay.now()
	// Where the payer is told the money landed: this chat when it is
	// private, else the payer's private chat (a channel must not read a
	// balance).
	told := research.Destination{Platform: in.Chat.Platform, ChatID: in.Chat.ID}
	where := "here"
	if in.Chat.Group {
		told.ChatID, where = PrivateChat(in.Identity), "in a private message"
	}
	chat, _ := json.Marshal(told)
	o := billing.Offer{Nonce: newNonce(), AccountID: acc, Payer: in.Identity, Bucket: bucket, Amount: amount,
		Chat: string(chat), CreatedAt: now, ExpiresAt: now.Add(c.Pay.offerTTL())}
	switch {
	case invoice && c.Pay.TelegramFiat:
		o.Provider = billing.ProviderTelegramFiat
	case invoice:
		o.Provider = billing.ProviderStars
	default:
		o.Provider = billing.ProviderStripe
	}
	if err := c.Pay.Store.CreateOffer(ctx, o); err != nil {
		return nil, err
	}
	title := fmt.Sprintf("forgebot %s top-up", bucketName(bucket))
	desc := fmt.Sprintf("%s added to your %s (%s).", amount, bucketName(bucket), bucketPays[bucket])
	if invoice {
		inv := &Invoice{Title: title, Description: desc, Payload: OfferPayload(o), Currency: "XTR", Label: amount.String() + " " + bucketShort(bucket), Total: c.Pay.Stars(amount)}
		if o.Provider == billing.ProviderTelegramFiat {
			inv.Currency, inv.Total = "USD", int64(amount)/10_000 // cents
		}
		return []Reply{{View: View{Kind: KindInfo, Private: true, Title: title, Text: desc, Invoice: inv}}}, nil
	}
	url, err := c.Pay.Checkout.CreateCheckout(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("create checkout: %w", err)
	}
	return []Reply{{View: View{Kind: KindInfo, Private: true, Title: title,
		Text:    desc + " The link is yours alone; you will be told " + where + " when the money lands.",
		Buttons: [][]Button{{{Label: "Pay " + amount.String(), URL: url}}}}}}, nil
}

func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// OfferPayload is what an invoice carries: version, account, bucket, amount
// in micro-dollars and the offer's nonce (within Telegram's 128 bytes).
func OfferPayload(o billing.Offer) string {
	return fmt.Sprintf("fb1:%d:%s:%d:%s", o.AccountID, o.Bucket, int64(o.Amount), o.Nonce)
}

type parsedPayload struct {
	acc    billing.AccountID
	bucket billing.Bucket
	amount billing.Money
	nonce  string
}

func parseOfferPayload(s string) (parsedPayload, bool) {
	parts := strings.Split(s, ":")
	if len(parts) != 5 || parts[0] != "fb1" {
		return parsedPayload{}, false
	}
	acc, err1 := strconv.ParseInt(parts[1], 10, 64)
	amount, err2 := strconv.ParseInt(parts[3], 10, 64)
	bucket, err3 := billing.ParseBucket(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || len(parts[4]) < 16 {
		return parsedPayload{}, false
	}
	return parsedPayload{billing.AccountID(acc), bucket, billing.Money(amount), parts[4]}, true
}

// Checkout is a payer about to pay (Telegram's pre_checkout_query).
type PaymentCheck struct {
	Payer    billing.Identity
	Payload  string
	Currency string
	Total    int64
}

// PreCheckout decides whether a payment may go ahead: "" to accept, else the
// reason shown to the payer. It refuses an altered, unknown, foreign, stale
// or already paid invoice.
func (c *Conversation) PreCheckout(ctx context.Context, pc PaymentCheck) string {
	if c.Pay == nil {
		return "Payments are not accepted by this bot."
	}
	o, why := c.matchOffer(ctx, pc.Payload, pc.Currency, pc.Total)
	if why != "" {
		return why
	}
	if acc, err := c.Ledger.AccountOf(ctx, pc.Payer); err != nil || acc != o.AccountID {
		return "This invoice was made for someone else: send /topup to get your own."
	}
	if o.PaidBy != "" {
		return "This invoice was paid already."
	}
	if !c.Pay.now().Before(o.ExpiresAt) {
		return "This invoice expired: send /topup for a new one."
	}
	return ""
}

// matchOffer finds the offer a payload names and checks that the payload
// and the amount paid are exactly the offer's.
func (c *Conversation) matchOffer(ctx context.Context, payload, currency string, total int64) (billing.Offer, string) {
	p, ok := parseOfferPayload(payload)
	if !ok {
		return billing.Offer{}, "This invoice is not valid: send /topup for a new one."
	}
	o, err := c.Pay.Store.Offer(ctx, p.nonce)
	if err != nil {
		return o, "This invoice is unknown: send /topup for a new one."
	}
	if o.AccountID != p.acc || o.Bucket != p.bucket || o.Amount != p.amount {
		return o, "This invoice was altered: send /topup for a new one."
	}
	if currency == "XTR" && (o.Provider != billing.ProviderStars || total != c.Pay.Stars(o.Amount)) {
		return o, "This invoice's price was altered: send /topup for a new one."
	}
	if strings.EqualFold(currency, "usd") && ((o.Provider != billing.ProviderStripe && o.Provider != billing.ProviderTelegramFiat) || total*10_000 != int64(o.Amount)) {
		return o, "This payment's amount does not match its offer."
	}
	if currency != "XTR" && !strings.EqualFold(currency, "usd") {
		return o, "This payment's currency is not accepted."
	}
	return o, ""
}

// PaymentDone is a completed payment as a provider reports it.
type PaymentDone struct {
	Provider    string
	ChargeID    string
	ExternalRef string
	Payer       billing.Identity // zero when the provider does not say (Stripe)
	Payload     string
	Currency    string
	Total       int64
}

// PaymentReceived credits a completed payment exactly once (keyed by its
// charge id) and returns the message for the payer: the amount, the new
// balance and the ledger entry. A replayed payment returns no reply. An
// error means nothing was committed and the call may be repeated (the
// database was unreachable, say); a payment that matches no offer is not an
// error but a reply saying an admin will refund it.
func (c *Conversation) PaymentReceived(ctx context.Context, pd PaymentDone) ([]Reply, error) {
	v, replayed, err := c.creditPayment(ctx, pd)
	if err != nil {
		var user *userError
		if errors.As(err, &user) {
			return []Reply{{View: View{Kind: KindError, Text: user.msg, Private: true}}}, nil
		}
		return nil, err
	}
	if replayed {
		return nil, nil
	}
	return []Reply{{View: v}}, nil
}

// PaymentNotice credits a payment reported by a webhook and tells the payer
// in the chat the offer came from. It returns an error (the webhook answers
// 5xx and the provider retries) only when nothing was committed.
func (c *Conversation) PaymentNotice(ctx context.Context, pd PaymentDone) error {
	v, replayed, err := c.creditPayment(ctx, pd)
	var user *userError
	if errors.As(err, &user) {
		return fmt.Errorf("%w: %s", billing.ErrOfferMismatch, user.msg)
	}
	if err != nil {
		return err
	}
	if !replayed {
		c.notifyOffer(ctx, pd.Payload, v.Text)
	}
	return nil
}

func (c *Conversation) notifyOffer(ctx context.Context, payload, text string) {
	p, ok := parseOfferPayload(payload)
	if !ok {
		return
	}
	o, err := c.Pay.Store.Offer(ctx, p.nonce)
	if err != nil || o.Chat == "" {
		return
	}
	var d research.Destination
	if json.Unmarshal([]byte(o.Chat), &d) == nil {
		c.Notify(ctx, d, text)
	}
}

func (c *Conversation) creditPayment(ctx context.Context, pd PaymentDone) (View, bool, error) {
	if c.Pay == nil {
		return View{}, false, errors.New("payment received but payments are off")
	}
	o, why := c.matchOffer(ctx, pd.Payload, pd.Currency, pd.Total)
	if why != "" {
		ref := newRef()
		c.log().Error("payment does not match its offer: refund it", "ref", ref, "provider", pd.Provider, "charge_id", pd.ChargeID, "why", why)
		return View{}, false, sayf("Your payment %s arrived but does not match its invoice (ref %s); an admin will refund it.", pd.ChargeID, ref)
	}
	actor := pd.Payer.String()
	if pd.Payer == (billing.Identity{}) {
		actor = pd.Provider
	}
	p, e, err := c.Pay.Store.CreditPayment(ctx, billing.PaymentRequest{Provider: pd.Provider, ChargeID: pd.ChargeID,
		ExternalRef: pd.ExternalRef, OfferNonce: o.Nonce, AccountID: o.AccountID, Bucket: o.Bucket, Amount: o.Amount, Actor: actor})
	if err != nil {
		return View{}, false, err
	}
	if p.Replayed {
		c.log().Info("payment replayed", "provider", pd.Provider, "charge_id", pd.ChargeID)
		return View{}, true, nil
	}
	bal, err := c.Ledger.Balances(ctx, o.AccountID)
	if err != nil {
		return View{}, false, err
	}
	text := fmt.Sprintf("Payment received: %s added to your %s (ledger entry #%d, %s). %s: %s available.",
		o.Amount, bucketName(o.Bucket), e.ID, e.Reference, upper(bucketName(o.Bucket)), bal[o.Bucket].Available)
	if e.DebtDelta < 0 {
		text += fmt.Sprintf(" %s of it paid what you owed after a refund.", -e.DebtDelta)
	}
	if d := bal.Debt(); d > 0 {
		text += fmt.Sprintf(" You still owe %s; runs wait until it is paid.", d)
	}
	return View{Kind: KindInfo, Title: "Payment received", Text: text, Private: true}, false, nil
}

func upper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// RefundNotice reverses a payment a provider refunded on its own side (a
// Stripe refund from the dashboard): total is the refunded total so far.
func (c *Conversation) RefundNotice(ctx context.Context, provider, ref string, total billing.Money) error {
	if c.Pay == nil {
		return errors.New("refund received but payments are off")
	}
	p, e, err := c.Pay.Store.RefundPayment(ctx, billing.RefundRequest{Provider: provider, ChargeID: ref, Total: total, Actor: provider})
	if err != nil || p.Replayed {
		return err
	}
	if p.OfferNonce != "" {
		if o, err := c.Pay.Store.Offer(ctx, p.OfferNonce); err == nil {
			c.notifyOffer(ctx, OfferPayload(o), c.refundText(p, e))
		}
	}
	return nil
}

func (c *Conversation) refundText(p billing.Payment, e billing.Entry) string {
	s := fmt.Sprintf("Payment %s was refunded: %s taken back from your %s (ledger entry #%d).", p.Reference(), -e.Amount, bucketName(p.Bucket), e.ID)
	if e.DebtDelta > 0 {
		s += fmt.Sprintf(" %s of it was already spent, so you owe %s: new runs wait until a top-up pays it.", e.DebtDelta, e.DebtDelta)
	}
	return s
}

// adminRefundText is refundText for the admin who refunded.
func adminRefundText(p billing.Payment, e billing.Entry) string {
	s := fmt.Sprintf("Payment %s of account %d was refunded: %s taken back from its %s (ledger entry #%d).",
		p.Reference(), p.AccountID, -e.Amount, bucketName(p.Bucket), e.ID)
	if e.DebtDelta > 0 {
		s += fmt.Sprintf(" %s of it was already spent: the account owes %s and its runs wait until it is paid.", e.DebtDelta, e.DebtDelta)
	}
	return s
}

// refund is the admin's /refund CHARGE_ID: the provider gives the money
// back, then the credit is reversed.
func (c *Conversation) refund(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	if !c.Engine.IsAdmin(in.Identity) {
		return nil, sayf("Only an admin can refund payments.")
	}
	if c.Pay == nil {
		return nil, sayf("Payments are not set up on this bot.")
	}
	if len(args) != 1 {
		return nil, sayf("Usage: /refund CHARGE_ID (the charge id from the payment's ledger entry)")
	}
	id := args[0]
	var (
		p   billing.Payment
		err error
	)
	for _, prov := range []string{billing.ProviderStars, billing.ProviderStripe, billing.ProviderTelegramFiat} {
		if p, err = c.Pay.Store.Payment(ctx, prov, id); err == nil {
			break
		}
	}
	if err != nil {
		return nil, sayf("No payment has the charge id %q.", id)
	}
	if p.Refunded >= p.Amount {
		return nil, sayf("Payment %s was refunded already.", p.Reference())
	}
	r := c.Pay.Refunders[p.Provider]
	after := ""
	if r == nil && p.Provider == billing.ProviderTelegramFiat {
		// Telegram has no refund call for a provider's payment: the admin
		// refunds it at the provider, and this reverses the credit.
		r = noRefund{}
		after = fmt.Sprintf(" Now refund the payment at your payment provider (its charge id %s): Telegram cannot refund it for the bot.", p.ExternalRef)
	}
	if r == nil {
		return nil, sayf("Refund %s at %s itself (its dashboard); the credit is reversed when %s reports the refund.", p.Reference(), p.Provider, p.Provider)
	}
	payer := billing.Identity{}
	if o, err := c.Pay.Store.Offer(ctx, p.OfferNonce); err == nil {
		payer = o.Payer
	}
	if err := r.Refund(ctx, p, payer); err != nil {
		return nil, sayf("The refund of %s was refused by %s: %v. Nothing changed.", p.Reference(), p.Provider, err)
	}
	p, e, err := c.Pay.Store.RefundPayment(ctx, billing.RefundRequest{Provider: p.Provider, ChargeID: p.ChargeID, Actor: in.Identity.String()})
	if errors.Is(err, billing.ErrAlreadyRefunded) {
		// The provider's own report of this refund (Stripe's webhook) was
		// quicker and reversed the credit.
		return []Reply{{View: View{Kind: KindInfo, Title: "Refunded", Private: true,
			Text: fmt.Sprintf("Done. Payment %s was refunded at %s, and its credit was reversed already.", p.Reference(), p.Provider)}}}, nil
	}
	if err != nil {
		return nil, err
	}
	if p.OfferNonce != "" {
		if o, err := c.Pay.Store.Offer(ctx, p.OfferNonce); err == nil {
			c.notifyOffer(ctx, OfferPayload(o), c.refundText(p, e))
		}
	}
	return []Reply{{View: View{Kind: KindInfo, Title: "Refunded", Private: true, Text: "Done. " + adminRefundText(p, e) + after}}}, nil
}

// noRefund is the refunder of a provider with no refund call.
type noRefund struct{}

func (noRefund) Refund(context.Context, billing.Payment, billing.Identity) error { return nil }

// grant is the admin's /grant platform:id AMOUNT BUCKET [NOTE...].
func (c *Conversation) grant(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	if !c.Engine.IsAdmin(in.Identity) {
		return nil, sayf("Only an admin can grant money.")
	}
	if c.Pay == nil {
		return nil, sayf("Grants in chat are not set up on this bot.")
	}
	usage := sayf("Usage: /grant telegram:42 5.00 credit|routed NOTE")
	if len(args) < 3 {
		return nil, usage
	}
	who, err := billing.ParseIdentity(args[0])
	if err != nil {
		return nil, sayf("%v", err)
	}
	amount, err := billing.ParseMoney(args[1])
	if err != nil || amount <= 0 || amount > 10_000*billing.Micro {
		return nil, sayf("A grant is a positive amount up to $10000.00, like 5.00.")
	}
	bucket, err := billing.ParseBucket(strings.ToLower(args[2]))
	if err != nil {
		return nil, usage
	}
	note := strings.Join(args[3:], " ")
	if note == "" {
		return nil, sayf("Say why in a note: /grant %s %s %s NOTE", who, args[1], bucket)
	}
	// The command's message (or its delivery) keys the grant: a redelivered
	// update or interaction grants once.
	key := fmt.Sprintf("grant:%s:%s:%s", in.Identity, in.Chat.ID, in.MessageID)
	switch {
	case in.MessageID != "":
	case in.Delivery != "":
		key = fmt.Sprintf("grant:%s:%s:d:%s", in.Identity, in.Chat.ID, in.Delivery)
	default:
		key = "grant:" + in.Identity.String() + ":" + newNonce()
	}
	e, err := c.Pay.Store.Post(ctx, billing.PostRequest{Identity: who, Bucket: bucket, Kind: billing.KindGrant, Amount: amount,
		Key: key, Reference: "admin grant: " + note, Actor: in.Identity.String()})
	if err != nil {
		return nil, err
	}
	return []Reply{{View: View{Kind: KindInfo, Private: true, Text: fmt.Sprintf("Granted %s of %s to %s (ledger entry #%d, by %s: %s).",
		amount, bucketName(bucket), who, e.ID, in.Identity, note)}}}, nil
}

// limit is /limit [daily AMOUNT | monthly AMOUNT | off].
func (c *Conversation) limit(ctx context.Context, in Incoming, args []string) ([]Reply, error) {
	if c.Pay == nil {
		return nil, sayf("Spend limits are not set up on this bot.")
	}
	acc, err := c.Ledger.EnsureAccount(ctx, in.Identity)
	if err != nil {
		return nil, err
	}
	sp, err := c.Pay.Store.Spending(ctx, acc, c.Pay.Limits.Defaults)
	if err != nil {
		return nil, err
	}
	usage := sayf("Usage: /limit daily 2.00 | /limit monthly 20.00 | /limit off (a positive dollar amount up to $100000.00)")
	lim := sp.Limits
	switch {
	case len(args) == 0:
		return []Reply{{View: View{Kind: KindInfo, Title: "Your spend limits", Text: spendText(sp), Private: true}}}, nil
	case len(args) == 1 && strings.EqualFold(args[0], "off"):
		if lim, err = c.Pay.Limits.Resolve(lim, "daily", -1); err == nil {
			lim, err = c.Pay.Limits.Resolve(lim, "monthly", -1)
		}
	case len(args) == 2:
		period := strings.ToLower(args[0])
		if period != "daily" && period != "monthly" {
			return nil, usage
		}
		var amount billing.Money
		if strings.EqualFold(args[1], "off") {
			amount = -1
		} else if amount, err = billing.ParseMoney(args[1]); err != nil || amount <= 0 || amount > 100_000*billing.Micro {
			return nil, usage
		}
		lim, err = c.Pay.Limits.Resolve(lim, period, amount)
	default:
		return nil, usage
	}
	if err != nil {
		return nil, sayf("%s", strings.TrimPrefix(err.Error(), billing.ErrInvalidAmount.Error()+": "))
	}
	if err := c.Pay.Store.SetLimits(ctx, acc, lim, in.Identity.String()); err != nil {
		return nil, err
	}
	sp.Limits, sp.Own = lim, true
	return []Reply{{View: View{Kind: KindInfo, Title: "Spend limits set", Text: spendText(sp), Private: true}}}, nil
}

// spendText is "today: $0.40 of $2.00; this month: $3.10 of $20.00".
func spendText(sp billing.Spend) string {
	part := func(name string, spent, limit billing.Money) string {
		if limit == 0 {
			return fmt.Sprintf("%s: %s (no limit)", name, spent)
		}
		return fmt.Sprintf("%s: %s of %s", name, spent, limit)
	}
	s := part("today", sp.Today, sp.Limits.Daily) + "; " + part("this month", sp.Month, sp.Limits.Monthly)
	if !sp.Own && !sp.Limits.None() {
		s += " (this bot's default limits)"
	}
	return s + ". Runs count at their hold until they settle, then at what they cost; days and months are UTC."
}

// welcome gives a first-time user the welcome grant and returns the words
// that say so ("" when nothing was granted).
func (c *Conversation) welcome(ctx context.Context, in Incoming) string {
	if c.Pay == nil || c.Pay.Welcome.Amount <= 0 || in.Identity.Validate() != nil {
		return ""
	}
	e, ok, err := c.Pay.Store.GrantWelcome(ctx, in.Identity, c.Pay.Welcome)
	if err != nil {
		c.log().Warn("welcome grant failed", "err", err)
		return ""
	}
	if !ok {
		return ""
	}
	return fmt.Sprintf("Welcome to forgebot! You got %s of %s to try it (ledger entry #%d): %s. Top up any time with /topup.",
		e.Amount, bucketName(e.Bucket), e.ID, bucketPays[e.Bucket])
}

// withWelcome puts the welcome words at the top of the first reply's view
// (every platform shows that one), or in a reply of their own.
func withWelcome(welcome string, replies []Reply) []Reply {
	if welcome == "" {
		return replies
	}
	for i := range replies {
		if replies[i].View.Kind != "" {
			replies[i].View.Text = strings.TrimSpace(welcome + "\n\n" + replies[i].View.Text)
			replies[i].View.Private = true // it tells a balance
			return replies
		}
	}
	return append([]Reply{{View: View{Kind: KindInfo, Text: welcome, Private: true}}}, replies...)
}

// lowBalance adds a note and top-up buttons to a run's final view when the
// run took its bucket below the threshold: once per crossing, because a
// run that started below it says nothing.
func (c *Conversation) lowBalance(v *View, r research.Run) {
	if c.Pay == nil || c.Pay.LowBalance <= 0 || r.Captured <= 0 {
		return
	}
	// The settle says what its bucket had left; a run settled before it
	// did is read.
	after := r.AvailableAfter
	if r.CaptureEntryID == 0 {
		bal, err := c.Ledger.Balances(context.Background(), r.AccountID)
		if err != nil {
			return
		}
		after = bal[r.Bucket].Available
	}
	before := after + r.Captured
	if after >= c.Pay.LowBalance || before < c.Pay.LowBalance {
		return
	}
	// No figure: a run's final may be read by a whole group; /balance
	// answers the owner alone.
	how := "Top up:"
	if !c.canPay(r.Owner.Platform) {
		how = c.TopUpHint
	}
	v.Text = strings.TrimSpace(v.Text + fmt.Sprintf("\n\nThe %s of this run's owner is now below %s (/balance shows it). %s", bucketName(r.Bucket), c.Pay.LowBalance, how))
	v.Buttons = append(v.Buttons, c.topupButtons(r.Owner.Platform, r.Bucket)...)
}

// pressTopup handles a top-up amount button.
func (c *Conversation) pressTopup(ctx context.Context, in Incoming) ([]Reply, error) {
	b, a, ok := parseTopup(in.Button)
	if !ok {
		return nil, sayf("That button is not valid any more.")
	}
	return c.offer(ctx, in, b, a)
}

// balanceExtras adds debt, spend limits and the top-up buttons to /balance.
func (c *Conversation) balanceExtras(ctx context.Context, platform string, acc billing.AccountID, bal billing.Balances, v *View) {
	v.Private = true
	if d := bal.Debt(); d > 0 {
		v.Fields = append(v.Fields, Field{"Owed after a refund", fmt.Sprintf("%s: new runs wait until a top-up pays it", d)})
	}
	if c.Pay == nil {
		return
	}
	if sp, err := c.Pay.Store.Spending(ctx, acc, c.Pay.Limits.Defaults); err == nil {
		v.Fields = append(v.Fields, Field{"Spend limits", spendText(sp)})
	}
	if c.canPay(platform) {
		v.Text = "Top up with the buttons or /topup."
		v.Buttons = append(v.Buttons, c.topupButtons(platform, "")...)
	}
}

// moneyLines lists recent top-ups, refunds and grants for /usage.
func (c *Conversation) moneyLines(ctx context.Context, acc billing.AccountID) string {
	entries, err := c.Ledger.Entries(ctx, acc, 100)
	if err != nil {
		return ""
	}
	var b strings.Builder
	n := 0
	for _, e := range entries {
		if e.Kind != billing.KindTopup && e.Kind != billing.KindRefund && e.Kind != billing.KindGrant {
			continue
		}
		if n++; n > 10 {
			break
		}
		fmt.Fprintf(&b, "%s  #%d  %s %s %s  %s", e.CreatedAt.UTC().Format("2006-01-02 15:04"), e.ID, e.Kind, e.Amount, e.Bucket, e.Reference)
		switch {
		case e.DebtDelta > 0:
			fmt.Fprintf(&b, " (%s owed)", e.DebtDelta)
		case e.DebtDelta < 0:
			fmt.Fprintf(&b, " (%s paid what was owed)", -e.DebtDelta)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// cannotConfirm says why a quote cannot be confirmed, with top-up buttons
// where money would help.
func (c *Conversation) cannotConfirm(q research.Quote) (string, [][]Button) {
	closeRow := []Button{{Label: "Close", Data: quoteButton(q.ID, "decline")}}
	switch {
	case q.Debt > 0:
		s := fmt.Sprintf("You owe %s after a refund: a top-up pays it first, then runs start again.", q.Debt)
		if !c.canPay(q.Request.Owner.Platform) {
			s += " " + c.TopUpHint
		}
		return strings.TrimSpace(s), append(c.topupButtons(q.Request.Owner.Platform, ""), closeRow)
	case q.OverLimit != "":
		return "Over your spend limit: " + q.OverLimit + ". Change it with /limit.", [][]Button{closeRow}
	}
	hint := c.TopUpHint
	if c.canPay(q.Request.Owner.Platform) {
		hint = "Top up with the buttons below or /topup."
	}
	return fmt.Sprintf("Not enough in your %s: this run holds up to %s and you have %s (short by %s). %s",
		bucketName(q.Bucket), q.Hold, q.Available, q.Shortfall, hint), append(c.topupButtons(q.Request.Owner.Platform, q.Bucket), closeRow)
}
