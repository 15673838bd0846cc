package discord_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/discord/discordtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// linkCheckout stands in for Stripe Checkout: it makes a link per offer.
type linkCheckout struct{ offers chan billing.Offer }

func (c linkCheckout) CreateCheckout(_ context.Context, o billing.Offer) (string, error) {
	c.offers <- o
	return "https://checkout.stripe.test/c/pay/" + o.Nonce, nil
}

// TestTopupLinkIsEphemeral: /topup on Discord answers with amount buttons,
// and a press with a checkout link button only the presser sees.
func TestTopupLinkIsEphemeral(t *testing.T) {
	t.Parallel()
	co := linkCheckout{offers: make(chan billing.Offer, 1)}
	b := setup(t, options{before: func(bed *testbed.Bed, conv *bots.Conversation) {
		conv.Pay = &bots.Pay{Store: bed.Store, Amounts: []billing.Money{billing.Micro, 5 * billing.Micro}, Checkout: co}
	}})
	in, cb := b.command(t, alice, "topup")
	if flags, _ := callbackData(t, cb); flags&64 == 0 {
		t.Fatalf("/topup response flags %d, want ephemeral", flags)
	}
	menu := b.original(t, in)
	var press string
	for _, row := range menu.Components {
		for _, btn := range row {
			if strings.HasPrefix(btn.Label, "$5 Credit") {
				press = btn.CustomID
			}
		}
	}
	if press == "" {
		t.Fatalf("no $5 Credit button on %+v", menu.Components)
	}
	cin, _ := b.click(t, alice, menu, press)
	o := <-co.offers
	if o.Amount != 5*billing.Micro || o.Bucket != billing.BucketCredit || o.Payer != identity(alice) {
		t.Fatalf("offer = %+v", o)
	}
	link := b.message(t, "the checkout link", func(m discordtest.Message) bool {
		for _, row := range m.Components {
			for _, btn := range row {
				if strings.HasSuffix(btn.URL, o.Nonce) {
					return true
				}
			}
		}
		return false
	})
	if !link.Ephemeral {
		t.Fatalf("checkout link %+v (interaction %s) is visible to the channel", link, cin.ID)
	}
}

// TestCheckoutPaidToldInDM: a top-up asked for in a guild channel is paid
// (the Stripe webhook's notice): the payer is told in a DM with the new
// balance, and the channel sees nothing of it.
func TestCheckoutPaidToldInDM(t *testing.T) {
	t.Parallel()
	co := linkCheckout{offers: make(chan billing.Offer, 1)}
	b := setup(t, options{before: func(bed *testbed.Bed, conv *bots.Conversation) {
		conv.Pay = &bots.Pay{Store: bed.Store, Amounts: []billing.Money{billing.Micro, 5 * billing.Micro}, Checkout: co}
	}})
	in, _ := b.command(t, alice, "topup", discordtest.String("args", "credit 5.00"))
	o := <-co.offers
	link := b.original(t, in)
	if !link.Ephemeral || !strings.Contains(text(link), "told in a private message") {
		t.Fatalf("checkout answer %+v: want it ephemeral, saying where the payer is told", link)
	}
	pd := bots.PaymentDone{Provider: billing.ProviderStripe, ChargeID: "cs_test_dm", Payload: bots.OfferPayload(o), Currency: "usd", Total: 500}
	if err := b.conv.PaymentNotice(t.Context(), pd); err != nil {
		t.Fatal(err)
	}
	dm := b.message(t, "the payment notice", func(m discordtest.Message) bool {
		return strings.Contains(text(m), "Payment received")
	})
	if dm.ChannelID != discordtest.DMChannel(alice.ID) || !strings.Contains(text(dm), "$5.00 added to your Credit") ||
		!strings.Contains(strings.ReplaceAll(text(dm), `\_`, "_"), "stripe:cs_test_dm") {
		t.Fatalf("payment notice in %s: %q: want it in alice's DM with the amount and the ledger reference", dm.ChannelID, text(dm))
	}
	for _, m := range b.fake.Messages() {
		if m.ChannelID == channel.Channel && !m.Ephemeral && strings.Contains(text(m), "$5.00") {
			t.Fatalf("the channel saw the payment: %+v", m)
		}
	}
	acc, _ := b.bed.Store.AccountOf(t.Context(), identity(alice))
	if bal, _ := b.bed.Store.Balances(t.Context(), acc); bal[billing.BucketCredit].Posted != 5*billing.Micro {
		t.Fatalf("credit = %s, want $5.00", bal[billing.BucketCredit].Posted)
	}
	b.bed.CheckLedger()
}
