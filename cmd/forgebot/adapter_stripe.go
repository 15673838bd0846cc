package main

import (
	"net/http"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/stripe"
)

// setupStripe turns Stripe Checkout on when STRIPE_SECRET_KEY is set: /topup
// outside Telegram answers with a Checkout link, and the webhook is served
// at POST /stripe/webhook on mux. It runs before the chat adapters start.
func setupStripe(cfg Config, a *app, mux *http.ServeMux) (bool, error) {
	p := cfg.Pay
	if p.StripeSecretKey == "" || a.conv.Pay == nil {
		return false, nil
	}
	co, err := stripe.New(stripe.Config{SecretKey: p.StripeSecretKey, WebhookSecret: p.StripeWebhookSecret, APIURL: p.StripeAPIURL,
		SuccessURL: cfg.PublicURL + stripe.DonePath, CancelURL: cfg.PublicURL + stripe.CancelledPath, Log: a.log}, a.conv)
	if err != nil {
		return false, badInput("STRIPE_*: %v", err)
	}
	co.Mount(mux)
	a.conv.Pay.Checkout = co
	a.conv.Pay.Refunders[billing.ProviderStripe] = co // an admin's /refund of a Stripe payment
	a.log.Info("stripe checkout", "webhook_path", stripe.WebhookPath)
	return true, nil
}
