package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/bots/discord/discordtest"
	"github.com/tokensforge/forgebot/bots/stripe/stripetest"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
)

// TestServeStripeToldInChat: `forgebot serve` with Discord, Telegram (Stars
// off) and Stripe: a Discord user's /topup in a guild channel and a Telegram
// user's /topup make Checkout Sessions; when Stripe's signed webhook reports
// each paid, the payer is told in their private chat (a Discord DM, the
// Telegram private chat) with the new balance, and the guild channel sees
// nothing of it.
func TestServeStripeToldInChat(t *testing.T) {
	t.Parallel()
	tg := telegramtest.New(t)
	dc := discordtest.New(t, discordtest.Options{})
	st := stripetest.New(t)
	s := startServe(t, func(addr string) map[string]string {
		return map[string]string{"FORGE_PUBLIC_URL": "http://" + addr,
			"TELEGRAM_BOT_TOKEN": telegramtest.Token, "TELEGRAM_API_URL": tg.URL, "FORGE_STARS_PER_USD": "0",
			"DISCORD_BOT_TOKEN": dc.BotToken, "DISCORD_APP_ID": dc.AppID, "DISCORD_API_URL": dc.URL,
			"STRIPE_SECRET_KEY": stripetest.SecretKey, "STRIPE_WEBHOOK_SECRET": stripetest.WebhookSecret, "STRIPE_API_URL": st.URL}
	})
	s.logs.WaitFor(t, "configured=\"discord, telegram\"", 1)
	dc.Wait(t, "gateway connected and commands registered", 10*time.Second, func() bool {
		return dc.Connected() && len(dc.Commands("global")) > 0
	})
	hook := "http://" + s.addr + "/stripe/webhook"

	// Discord, in a guild channel.
	du := discordtest.User{ID: "400000000000000077"}
	where := discordtest.Where{Channel: "600000000000000077", Guild: "500000000000000077"}
	dc.Dispatch(t, dc.Command(du, where, "topup", discordtest.String("args", "credit 5.00")))
	ds := st.WaitSession(t, 1, 30*time.Second)
	if code := stripetest.Deliver(t, hook, stripetest.WebhookSecret, ds.Completed("evt_d", "paid")); code != http.StatusOK {
		t.Fatalf("Discord payer's webhook answered %d", code)
	}
	var dm discordtest.Message
	dc.Wait(t, "the Discord payer's notice", 30*time.Second, func() bool {
		for _, m := range dc.Messages() {
			if strings.Contains(messageText(m), "Payment received") {
				dm = m
				return true
			}
		}
		return false
	})
	if dm.ChannelID != discordtest.DMChannel(du.ID) || !strings.Contains(messageText(dm), "$5.00 added to your Credit") {
		t.Fatalf("Discord notice in %s: %q, want it in the payer's DM", dm.ChannelID, messageText(dm))
	}

	// Telegram, Stars off: a Checkout link too.
	tu := telegramtest.User{ID: 78, FirstName: "Tom"}
	tg.SendText(telegramtest.Private(tu), tu, "/topup routed 1.00")
	ts := st.WaitSession(t, 2, 30*time.Second)
	if ts.Meta()["bucket"] != "routed" || ts.Cents() != 100 {
		t.Fatalf("Telegram payer's session = %+v", ts.Meta())
	}
	if code := stripetest.Deliver(t, hook, stripetest.WebhookSecret, ts.Completed("evt_t", "paid")); code != http.StatusOK {
		t.Fatalf("Telegram payer's webhook answered %d", code)
	}
	tg.WaitCall(t, 30*time.Second, "sendMessage", func(c telegramtest.Call) bool {
		return c.Fields["chat_id"] == "78" && strings.Contains(c.Fields["text"], "$1.00 added to your routed balance")
	})
	for _, m := range dc.Messages() {
		if m.ChannelID == where.Channel && !m.Ephemeral && strings.Contains(messageText(m), "$") {
			t.Fatalf("the guild channel saw a payment: %q", messageText(m))
		}
	}

	s.stop(t, telegramtest.Token, dc.BotToken, stripetest.SecretKey, stripetest.WebhookSecret)
	if r := (cli{t, s.db}).run("ledger", "check"); r.code != 0 {
		t.Fatalf("ledger check: %+v", r)
	}
}

// messageText is a Discord message's content and embeds as one string.
func messageText(m discordtest.Message) string {
	var sb strings.Builder
	sb.WriteString(m.Content)
	for _, e := range m.Embeds {
		sb.WriteString("\n" + e.Title + "\n" + e.Description)
	}
	return sb.String()
}
