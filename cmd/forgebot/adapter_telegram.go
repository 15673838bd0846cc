package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/telegram"
)

// setupTelegram starts the Telegram adapter when TELEGRAM_BOT_TOKEN is set:
// long polling, or webhook mode on mux when TELEGRAM_WEBHOOK_URL is set
// (secret TELEGRAM_WEBHOOK_SECRET, else one derived from the token), against
// TELEGRAM_API_URL when set. It registers the adapter with the outbox; the
// adapter stops (polling ends, in-flight updates get 10 s) when ctx ends.
func setupTelegram(ctx context.Context, cfg Config, a *app, mux *http.ServeMux) (bool, error) {
	token := strings.TrimSpace(cfg.getenv("TELEGRAM_BOT_TOKEN"))
	if token == "" {
		return false, nil
	}
	tc := telegram.Config{
		Token:         token,
		APIURL:        strings.TrimRight(strings.TrimSpace(cfg.getenv("TELEGRAM_API_URL")), "/"),
		WebhookURL:    strings.TrimSpace(cfg.getenv("TELEGRAM_WEBHOOK_URL")),
		WebhookSecret: strings.TrimSpace(cfg.getenv("TELEGRAM_WEBHOOK_SECRET")),
		Log:           a.log,
		Rates:         a.sharedRates(),
		// Card payments in USD through a provider instead of Stars.
		PaymentProviderToken: strings.TrimSpace(cfg.getenv("TELEGRAM_PAYMENT_PROVIDER_TOKEN")),
	}
	if tc.WebhookURL != "" && tc.WebhookSecret == "" {
		tc.WebhookSecret = webhookSecret(token)
	}
	if err := tc.Validate(); err != nil {
		return false, badInput("TELEGRAM_*: %v", err)
	}
	ad, err := telegram.New(tc, a.conv)
	if err != nil {
		return false, badInput("%v", err)
	}
	a.outbox.Register(telegram.Platform, ad, telegram.Limits)
	if a.conv.Pay != nil {
		a.conv.Pay.Refunders[billing.ProviderStars] = ad
		a.conv.Pay.TelegramFiat = tc.PaymentProviderToken != ""
	}
	ad.Mount(mux)
	if err := ad.Start(ctx); err != nil {
		if errors.Is(err, telegram.ErrBadToken) {
			return false, badInput("TELEGRAM_BOT_TOKEN: %v", err)
		}
		return false, err
	}
	a.setState(telegram.Platform, ad.State)
	if tc.WebhookURL != "" {
		a.log.Info("telegram adapter", "mode", ad.Mode(), "webhook_path", ad.WebhookPath())
	} else {
		a.log.Info("telegram adapter", "mode", ad.Mode())
	}
	a.adapterStops = append(a.adapterStops, func(ctx context.Context) {
		if err := ad.Stop(ctx); err != nil {
			a.log.Warn("telegram stop", "err", err)
		}
	})
	return true, nil
}

// webhookSecret derives the webhook's secret token from the bot token when
// none is configured: unguessable without the token (whose holder could set
// the webhook anyway), and the same on every instance and restart, which a
// random one per process would not be once several instances share a webhook.
func webhookSecret(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("forgebot telegram webhook secret v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
