package telegram_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/bots/telegram"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// TestWebhookBotAPIDownAtStart: in webhook mode, a Bot API answering 502
// at start does not fail Start: the webhook path serves at once, State says
// the webhook is not registered yet, and registering it is retried until it
// works. An update whose reply cannot be sent (the API still failing) is
// logged with its update id and answered 503, so Telegram delivers it
// again; the redelivery is handled and answered 200.
func TestWebhookBotAPIDownAtStart(t *testing.T) {
	t.Parallel()
	const secret = "right_Secret-1"
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}, config: func(c *telegram.Config) {
		c.WebhookURL, c.WebhookSecret = "https://bot.example.com/hooks/tg", secret
		c.RetryMin, c.RetryMax = 20*time.Millisecond, 100*time.Millisecond
	}})
	down := telegramtest.Answer{Code: 502, Description: "Bad Gateway"}
	b.fake.Script("setWebhook", down, down, down)
	mux := http.NewServeMux()
	b.ad.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if err := b.ad.Start(t.Context()); err != nil {
		t.Fatalf("start with the Bot API down: %v", err)
	}
	if st := b.ad.State(); !strings.HasPrefix(st, "connecting") {
		t.Fatalf("state before the webhook is set = %q", st)
	}
	b.fake.Wait(t, wait, "the webhook registered after retries", func() bool { u, _ := b.fake.Webhook(); return u != "" })
	b.fake.Wait(t, wait, "state up", func() bool { return b.ad.State() == "up" })

	dm := telegramtest.Private(alice)
	help := b.fake.MessageUpdate(dm, alice, "/help")
	post := func() int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/hooks/tg", bytes.NewReader(help))
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	b.fake.Script("sendMessage", down, down, down, down, down, down)
	if code := post(); code != http.StatusServiceUnavailable {
		t.Fatalf("an update whose reply could not be sent answered %d, want 503 for a redelivery", code)
	}
	if !strings.Contains(b.logs.String(), "reply not sent") || !strings.Contains(b.logs.String(), "update_id=") {
		t.Fatalf("the failed reply is not logged with its update id:\n%s", b.logs.String())
	}
	// Drain what is left of the script, then the redelivery goes through.
	for len(b.fake.Calls("sendMessage")) < 6 {
		if code := post(); code == http.StatusOK {
			break
		}
	}
	if code := post(); code != http.StatusOK {
		t.Fatalf("the redelivered update answered %d", code)
	}
	b.reply(t, dm.ID, "/research")
}
