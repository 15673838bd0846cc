package telegram_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/telegram"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// TestWebhook: webhook mode registers the URL and secret, never polls, and
// the endpoint mounted on our mux refuses calls without the right secret
// with 401, accepts the right one, ignores a redelivered update, and says 503
// once stopped.
func TestWebhook(t *testing.T) {
	t.Parallel()
	const secret = "right_Secret-1"
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}, config: func(c *telegram.Config) {
		c.WebhookURL, c.WebhookSecret = "https://bot.example.com/hooks/tg", secret
	}})
	mux := http.NewServeMux()
	b.ad.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if err := b.ad.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if u, s := b.fake.Webhook(); u != "https://bot.example.com/hooks/tg" || s != secret || b.ad.WebhookPath() != "/hooks/tg" {
		t.Fatalf("webhook set to %q with secret %q, path %q", u, s, b.ad.WebhookPath())
	}

	dm := telegramtest.Private(alice)
	help := b.fake.MessageUpdate(dm, alice, "/help")
	post := func(method, token string, body []byte) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+"/hooks/tg", bytes.NewReader(body))
		if token != "" {
			req.Header.Set("X-Telegram-Bot-Api-Secret-Token", token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for _, tc := range []struct {
		method, token string
		body          []byte
		want          int
	}{
		{"POST", "", help, 401},
		{"POST", "wrong", help, 401},
		{"POST", secret + "x", help, 401},
		{"GET", secret, nil, 405},
		{"POST", secret, []byte("{not json"), 400},
		{"POST", secret, help, 200},
		{"POST", secret, help, 200}, // Telegram redelivers: handled once
	} {
		if got := post(tc.method, tc.token, tc.body); got != tc.want {
			t.Errorf("%s with token %q = %d, want %d", tc.method, tc.token, got, tc.want)
		}
	}
	b.reply(t, dm.ID, "You always see a quote first")
	if n := len(b.fake.Calls("sendMessage")); n != 1 {
		t.Errorf("%d replies, want 1 (a redelivered update is handled once)", n)
	}
	if n := len(b.fake.Calls("getUpdates")); n != 0 {
		t.Errorf("webhook mode polled %d times", n)
	}
	if !strings.Contains(b.logs.String(), "without the right secret token") {
		t.Error("refused webhook calls are not logged")
	}
	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.ad.Stop(stop); err != nil {
		t.Fatal(err)
	}
	if got := post("POST", secret, b.fake.MessageUpdate(dm, alice, "/help")); got != 503 {
		t.Errorf("after Stop = %d, want 503", got)
	}
}

// TestConfigAndToken: bad configuration is refused without the token in the
// message; a failing setMyCommands is only logged; a refused token is
// ErrBadToken; an unreachable Bot API is logged (the polling keeps trying)
// with the token redacted.
func TestConfigAndToken(t *testing.T) {
	t.Parallel()
	for _, c := range []telegram.Config{
		{Token: "not a token " + telegramtest.Token},
		{Token: telegramtest.Token, APIURL: "ftp://x"},
		{Token: telegramtest.Token, WebhookURL: "https://bot.example.com/tg"},                                 // no secret
		{Token: telegramtest.Token, WebhookURL: "https://bot.example.com/tg", WebhookSecret: "a b"},           // bad secret
		{Token: telegramtest.Token, WebhookURL: "http://bot.example.com/tg", WebhookSecret: "s"},              // http on Telegram's API
		{Token: telegramtest.Token, WebhookURL: "bot.example.com/tg", WebhookSecret: "s", APIURL: "http://x"}, // no scheme
	} {
		_, err := telegram.New(c, panicky{})
		if err == nil || strings.Contains(err.Error(), telegramtest.Token) {
			t.Errorf("New(%+v) = %v", c.WebhookURL, err)
		}
	}

	c := setup(t, options{bed: testbed.Options{NoWorkers: true}})
	c.fake.Script("setMyCommands", telegramtest.Answer{Code: 400, Description: "Bad Request: BOT_COMMAND_INVALID"})
	if err := c.ad.Start(t.Context()); err != nil || !strings.Contains(c.logs.String(), "setMyCommands failed") {
		t.Fatalf("Start when setMyCommands fails = %v; logs:\n%s", err, c.logs.String())
	}

	b := setup(t, options{bed: testbed.Options{NoWorkers: true}})
	b.fake.Script("getMe", telegramtest.Answer{Code: 401, Description: "Unauthorized"})
	if err := b.ad.Start(t.Context()); !errors.Is(err, telegram.ErrBadToken) {
		t.Fatalf("Start with a refused token = %v", err)
	}

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	d := setup(t, options{bed: testbed.Options{NoWorkers: true}, config: func(c *telegram.Config) { c.APIURL = down.URL }})
	if err := d.ad.Start(t.Context()); err != nil {
		t.Fatalf("Start with the Bot API down = %v, want a warning", err)
	}
	err := d.ad.Edit(t.Context(), dest(alice.ID, "7"), finalView(longReport(10), "https://x.example.com/r/1"))
	if err == nil || strings.Contains(err.Error(), telegramtest.Token) || !strings.Contains(d.logs.String(), "getMe failed") {
		t.Fatalf("edit with the API down = %v; logs:\n%s", err, d.logs.String())
	}
	// setup's cleanup checks that no log line holds the token.
}

// stalled is the conversation stuck on "/stall" until release closes.
type stalled struct {
	*bots.Conversation
	entered chan struct{}
	release chan struct{}
}

func (s stalled) Handle(ctx context.Context, in bots.Incoming) []bots.Reply {
	if in.Text == "/stall" {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.Conversation.Handle(ctx, in)
}

// TestWebhookWorkersBounded: with every update worker busy, a webhook call
// is answered 503 at once (Telegram delivers it again later) instead of a
// goroutine more per update; once a worker is free, updates are handled.
func TestWebhookWorkersBounded(t *testing.T) {
	t.Parallel()
	const secret = "bounded_Secret-1"
	st := stalled{entered: make(chan struct{}, 1), release: make(chan struct{})}
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}, config: func(c *telegram.Config) {
		c.WebhookURL, c.WebhookSecret, c.Workers = "https://bot.example.com/hooks/tg", secret, 1
	}, conv: func(c *bots.Conversation) telegram.Conversation { st.Conversation = c; return st }})
	mux := http.NewServeMux()
	b.ad.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if err := b.ad.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	post := func(body []byte) int {
		req, _ := http.NewRequestWithContext(context.Background(), "POST", srv.URL+"/hooks/tg", bytes.NewReader(body))
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	dm := telegramtest.Private(alice)
	first := make(chan int, 1)
	go func() { first <- post(b.fake.MessageUpdate(dm, alice, "/stall")) }()
	select {
	case <-st.entered: // the one worker is busy
	case <-time.After(30 * time.Second):
		t.Fatal("the first update was never handled")
	}
	if code := post(b.fake.MessageUpdate(dm, alice, "/help")); code != 503 {
		t.Fatalf("an update with every worker busy answered %d, want 503", code)
	}
	if !strings.Contains(b.logs.String(), "every worker busy") {
		t.Error("the refusal is not logged")
	}
	close(st.release)
	if code := <-first; code != 200 {
		t.Fatalf("the stalled update answered %d", code)
	}
	if code := post(b.fake.MessageUpdate(dm, alice, "/help")); code != 200 {
		t.Fatalf("an update once a worker is free answered %d", code)
	}
	b.reply(t, dm.ID, "You always see a quote first")
}
