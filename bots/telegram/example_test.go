package telegram_test

import (
	"fmt"
	"net/http"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/telegram"
)

// An adapter in webhook mode: Mount serves the webhook's path on our own
// mux, Start (not run here) registers it with Telegram, and the adapter is
// the outbox's sender for "telegram" destinations.
func Example() {
	conv := &bots.Conversation{} // wired to an engine and a store in real use
	ad, err := telegram.New(telegram.Config{
		Token:         "123456:AAexampleTokenFromBotFather",
		WebhookURL:    "https://bot.example.com/telegram/webhook",
		WebhookSecret: "a-long-random-secret",
	}, conv)
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	ad.Mount(mux)
	outbox := bots.NewOutbox(nil)
	outbox.Register(telegram.Platform, ad, telegram.Limits)
	fmt.Println(ad.Mode(), ad.WebhookPath())
	fmt.Println(telegram.Config{Token: "123456:AAexampleTokenFromBotFather"})
	// Output:
	// webhook /telegram/webhook
	// telegram.Config{api: https://api.telegram.org, polling, token and secret redacted}
}
