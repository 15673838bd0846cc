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
