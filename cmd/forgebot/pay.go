package main

import (
	"strconv"
	"strings"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
)

// PayConfig is money in from chat, from the environment.
type PayConfig struct {
	Amounts     []billing.Money // FORGE_TOPUP_AMOUNTS, default 1,5,20
	StarsPerUSD int64           // FORGE_STARS_PER_USD, default 50; 0 turns Stars off
	Welcome     billing.Welcome // FORGE_WELCOME_GRANT, e.g. routed:0.10
	Limits      billing.LimitPolicy
	LowBalance  billing.Money // FORGE_LOW_BALANCE, default 0.50; 0 turns the notice off

	StripeSecretKey     string // STRIPE_SECRET_KEY: turns Stripe Checkout on
	StripeWebhookSecret string // STRIPE_WEBHOOK_SECRET: required with it
	StripeAPIURL        string // STRIPE_API_URL: another base (tests, proxies)
}

func loadPayConfig(getenv func(string) string) (PayConfig, error) {
	p := PayConfig{StarsPerUSD: 50, LowBalance: 500_000,
		StripeSecretKey:     strings.TrimSpace(getenv("STRIPE_SECRET_KEY")),
		StripeWebhookSecret: strings.TrimSpace(getenv("STRIPE_WEBHOOK_SECRET")),
		StripeAPIURL:        strings.TrimRight(strings.TrimSpace(getenv("STRIPE_API_URL")), "/"),
	}
	amounts := strings.TrimSpace(getenv("FORGE_TOPUP_AMOUNTS"))
	if amounts == "" {
		amounts = "1,5,20"
	}
	for _, a := range strings.Split(amounts, ",") {
		m, err := billing.ParseMoney(strings.TrimSpace(a))
		if err != nil || m < 500_000 || m > 1000*billing.Micro || m%10_000 != 0 {
			return p, badInput("FORGE_TOPUP_AMOUNTS: want whole-cent dollar amounts from 0.50 to 1000.00 like 1,5,20, got %q", a)
		}
		p.Amounts = append(p.Amounts, m)
	}
	if len(p.Amounts) > 5 {
		return p, badInput("FORGE_TOPUP_AMOUNTS: at most 5 amounts (one row of buttons per bucket)")
	}
	if v := strings.TrimSpace(getenv("FORGE_STARS_PER_USD")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 10_000 {
			return p, badInput("FORGE_STARS_PER_USD: want a whole number of Stars per dollar (0 turns Stars off), got %q", v)
		}
		p.StarsPerUSD = n
	}
	w, err := billing.ParseWelcome(strings.TrimSpace(getenv("FORGE_WELCOME_GRANT")))
	if err != nil {
		return p, badInput("FORGE_WELCOME_GRANT: %v", err)
	}
	p.Welcome = w
	for name, dst := range map[string]*billing.Money{
		"FORGE_LIMIT_DAILY": &p.Limits.Defaults.Daily, "FORGE_LIMIT_MONTHLY": &p.Limits.Defaults.Monthly,
		"FORGE_LIMIT_DAILY_MAX": &p.Limits.Max.Daily, "FORGE_LIMIT_MONTHLY_MAX": &p.Limits.Max.Monthly,
		"FORGE_LOW_BALANCE": &p.LowBalance,
	} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			m, err := billing.ParseMoney(v)
			if err != nil || m < 0 {
				return p, badInput("%s: want a dollar amount like 2.00 (0 for none), got %q", name, v)
			}
			*dst = m
		}
	}
	for _, c := range []struct {
		name     string
		def, max billing.Money
	}{{"DAILY", p.Limits.Defaults.Daily, p.Limits.Max.Daily}, {"MONTHLY", p.Limits.Defaults.Monthly, p.Limits.Max.Monthly}} {
		if c.max > 0 && (c.def == 0 || c.def > c.max) {
			return p, badInput("FORGE_LIMIT_%s must be set and at most FORGE_LIMIT_%s_MAX", c.name, c.name)
		}
	}
	if (p.StripeSecretKey == "") != (p.StripeWebhookSecret == "") {
		return p, badInput("STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET go together: set both or neither")
	}
	return p, nil
}

// pay builds the conversation's payments; Stripe and the Stars refunder are
// added by the adapters that serve them.
func (p PayConfig) pay(store bots.PayStore) *bots.Pay {
	return &bots.Pay{Store: store, Amounts: p.Amounts, StarsPerUSD: p.StarsPerUSD, Welcome: p.Welcome, Limits: p.Limits,
		LowBalance: p.LowBalance, Refunders: map[string]bots.Refunder{}}
}
