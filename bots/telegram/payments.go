package telegram

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
)

// preCheckoutWithin bounds the check behind a pre_checkout_query: Telegram
// cancels the payment unless it is answered within 10 s.
const preCheckoutWithin = 7 * time.Second

// paymentAttempts bounds the tries to credit one successful_payment (about
// a minute with the default PaymentRetry of 1 s, doubling).
const paymentAttempts = 6

// Payer is what the adapter needs of the conversation for payments;
// *bots.Conversation has it.
type Payer interface {
	PreCheckout(ctx context.Context, pc bots.PaymentCheck) string
	PaymentReceived(ctx context.Context, pd bots.PaymentDone) ([]bots.Reply, error)
}

var (
	_ Payer         = (*bots.Conversation)(nil)
	_ bots.Refunder = (*Adapter)(nil)
)

// sendInvoice posts a view's invoice: Telegram Stars (currency XTR, no
// provider token, one price), or another currency through the payment
// provider's token.
func (a *Adapter) sendInvoice(ctx context.Context, t target, v bots.View) (int, error) {
	inv := v.Invoice
	if !a.budget.wait(ctx, t.chat) {
		return 0, fmt.Errorf("telegram: no rate budget for chat %d in time: %w", t.chat, ctx.Err())
	}
	p := &bot.SendInvoiceParams{ChatID: t.chat, MessageThreadID: t.thread, Title: truncate(inv.Title, 32),
		Description: truncate(inv.Description, 255), Payload: inv.Payload, Currency: inv.Currency,
		Prices: []models.LabeledPrice{{Label: inv.Label, Amount: int(inv.Total)}}}
	if inv.Currency != "XTR" {
		if a.cfg.PaymentProviderToken == "" {
			return 0, errors.New("telegram: a " + inv.Currency + " invoice needs TELEGRAM_PAYMENT_PROVIDER_TOKEN")
		}
		p.ProviderToken = a.cfg.PaymentProviderToken
	}
	m, err := a.bot.SendInvoice(ctx, p)
	if err != nil {
		return 0, a.redact.classify("sendInvoice", err)
	}
	return m.ID, nil
}

// onPreCheckout answers a pre_checkout_query at once: ok when the invoice is
// ours, unaltered, the payer's and still open; else the reason, which
// Telegram shows the payer.
func (a *Adapter) onPreCheckout(ctx context.Context, q *models.PreCheckoutQuery) {
	why := "Payments are not accepted by this bot."
	if p, ok := a.conv.(Payer); ok && q.From != nil {
		cctx, cancel := context.WithTimeout(ctx, preCheckoutWithin)
		why = p.PreCheckout(cctx, bots.PaymentCheck{Payer: identity(*q.From), Payload: q.InvoicePayload, Currency: q.Currency, Total: int64(q.TotalAmount)})
		if cctx.Err() != nil && why == "" {
			why = "This took too long: please try again."
		}
		cancel()
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	_, err := a.bot.AnswerPreCheckoutQuery(actx, &bot.AnswerPreCheckoutQueryParams{PreCheckoutQueryID: q.ID, OK: why == "", ErrorMessage: why})
	if err != nil {
		a.log.Warn("telegram: answerPreCheckoutQuery failed", "err", a.redact.classify("answerPreCheckoutQuery", err))
	}
	if why != "" {
		a.log.Info("telegram: payment refused at pre-checkout", "reason", why)
	}
}

// onPayment credits a successful_payment (exactly once, by its
// telegram_payment_charge_id) and tells the payer.
func (a *Adapter) onPayment(ctx context.Context, m *models.Message) {
	p, ok := a.conv.(Payer)
	if !ok || m.From == nil {
		a.log.Error("telegram: a payment arrived but payments are off", "charge_id", m.SuccessfulPayment.TelegramPaymentChargeID)
		return
	}
	sp := m.SuccessfulPayment
	provider := billing.ProviderStars
	if sp.Currency != "XTR" {
		provider = billing.ProviderTelegramFiat
	}
	// Telegram sends a successful_payment once: crediting is retried here
	// (it is keyed by the charge id, so a retry cannot credit twice), and it
	// is not cut short by the update's deadline.
	pd := bots.PaymentDone{Provider: provider, ChargeID: sp.TelegramPaymentChargeID, ExternalRef: sp.ProviderPaymentChargeID,
		Payer: identity(*m.From), Payload: sp.InvoicePayload, Currency: sp.Currency, Total: int64(sp.TotalAmount)}
	var (
		replies []bots.Reply
		err     error
	)
	wait := a.cfg.PaymentRetry
	if wait <= 0 {
		wait = time.Second
	}
retry:
	for attempt := 1; ; attempt++ {
		if replies, err = p.PaymentReceived(context.WithoutCancel(ctx), pd); err == nil || attempt == paymentAttempts {
			break
		}
		a.log.Warn("telegram: payment not credited yet, retrying", "charge_id", pd.ChargeID, "attempt", attempt, "err", err)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
			wait *= 2
		case <-a.workCtxDone():
			timer.Stop()
			break retry
		}
	}
	if err != nil {
		ref := newRef()
		a.log.Error("telegram: payment not credited: credit or refund it by hand", "ref", ref, "charge_id", pd.ChargeID,
			"payer", pd.Payer.String(), "payload", pd.Payload, "err", err)
		replies = []bots.Reply{{View: bots.View{Kind: bots.KindError, Private: true, Text: fmt.Sprintf(
			"Your payment %s arrived but could not be recorded yet (ref %s). Nothing is lost: an admin will credit or refund it.", pd.ChargeID, ref)}}}
	}
	t := target{chat: m.Chat.ID, replyTo: m.ID}
	for _, r := range replies {
		if !emptyView(r.View) {
			a.show(ctx, t, isGroup(m.Chat), *m.From, r.View)
		}
	}
}

// Refund implements bots.Refunder for Telegram Stars: refundStarPayment.
func (a *Adapter) Refund(ctx context.Context, p billing.Payment, payer billing.Identity) error {
	if p.Provider != billing.ProviderStars {
		return fmt.Errorf("telegram refunds only Stars payments, not %s", p.Provider)
	}
	if payer.Platform != Platform {
		return errors.New("the payer's Telegram id is unknown")
	}
	uid, err := strconv.ParseInt(payer.ExternalID, 10, 64)
	if err != nil {
		return errors.New("the payer's Telegram id is unknown")
	}
	_, err = a.bot.RefundStarPayment(ctx, &bot.RefundStarPaymentParams{UserID: uid, TelegramPaymentChargeID: p.ChargeID})
	if err != nil {
		err = a.redact.classify("refundStarPayment", err)
		if strings.Contains(err.Error(), "CHARGE_ALREADY_REFUNDED") {
			return nil // refunded at Telegram before; the ledger catches up
		}
		return err
	}
	return nil
}

// workCtxDone is closed when the adapter stops its work.
func (a *Adapter) workCtxDone() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.workCtx == nil {
		return nil
	}
	return a.workCtx.Done()
}
