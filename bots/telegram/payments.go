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

// sendInvoice posts a view's invoice (Telegram Stars: currency XTR, no
// provider token, one price).
func (a *Adapter) sendInvoice(ctx context.Context, t target, v bots.View) (int, error) {
	inv := v.Invoice
	if !a.budget.wait(ctx, t.chat) {
		return 0, fmt.Errorf("telegram: no rate budget for chat %d in time: %w", t.chat, ctx.Err())
	}
	p := &bot.SendInvoiceParams{ChatID: t.chat, MessageThreadID: t.thread, Title: truncate(inv.Title, 32),
		Description: truncate(inv.Description, 255), Payload: inv.Payload, Currency: inv.Currency,
		Prices: []models.LabeledPrice{{Label: inv.Label, Amount: int(inv.Total)}}}
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
	// Crediting must not be cut short by the update's deadline once started.
	replies, err := p.PaymentReceived(context.WithoutCancel(ctx), bots.PaymentDone{Provider: provider, ChargeID: sp.TelegramPaymentChargeID,
		ExternalRef: sp.ProviderPaymentChargeID, Payer: identity(*m.From), Payload: sp.InvoicePayload, Currency: sp.Currency, Total: int64(sp.TotalAmount)})
	if err != nil {
		a.log.Error("telegram: payment not credited", "charge_id", sp.TelegramPaymentChargeID, "err", err)
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
