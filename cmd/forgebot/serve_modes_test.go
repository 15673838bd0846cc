package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/bots/discord"
	"github.com/tokensforge/forgebot/bots/discord/discordtest"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// served is a `forgebot serve` running in the test.
type served struct {
	addr string
	db   string
	logs *testbed.Screen
	sig  chan os.Signal
	done chan int
}

// startServe migrates a fresh SQLite database and starts `forgebot serve`
// on a free local port with the environment env makes for that address
// (plus the database, the address and demo market data); it returns once
// serve listens.
func startServe(t *testing.T, env func(addr string) map[string]string) *served {
	t.Helper()
	db := "sqlite:" + filepath.Join(t.TempDir(), "forgebot.db")
	cli{t, db}.ok("migrate")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &served{addr: ln.Addr().String(), db: db, logs: newScreen(), sig: make(chan os.Signal, 1), done: make(chan int, 1)}
	ln.Close()
	vars := env(s.addr)
	vars["DATABASE_URL"], vars["FORGE_HTTP_ADDR"], vars["FORGE_MARKET"] = db, s.addr, "demo"
	go func() {
		s.done <- run(t.Context(), []string{"serve", "--grace", "2s"}, func(k string) string { return vars[k] },
			stdio{in: strings.NewReader(""), out: s.logs, err: s.logs, interrupts: s.sig})
	}()
	s.logs.WaitFor(t, "msg=serving", 1)
	return s
}

// stop sends SIGTERM, waits for serve to exit 0, and checks that no secret
// reached its log.
func (s *served) stop(t *testing.T, secrets ...string) {
	t.Helper()
	s.sig <- syscall.SIGTERM
	select {
	case code := <-s.done:
		if code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, s.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not drain")
	}
	for _, secret := range secrets {
		if strings.Contains(s.logs.String(), secret) {
			t.Errorf("a secret reached the log:\n%s", s.logs.String())
		}
	}
}

// post sends body to our server with the given headers and returns the
// status and the body answered.
func (s *served) post(t *testing.T, path string, body []byte, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+s.addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestServeTelegramWebhook: with TELEGRAM_WEBHOOK_URL, serve registers the
// webhook at start with the configured secret (or, without one, the secret
// derived from the token), never polls, and serves the URL's path on its own
// HTTP server: an update with the right secret header is handled, a wrong
// or missing secret gets 401 and is not.
func TestServeTelegramWebhook(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, secret string // secret "" = not configured
	}{{"configured secret", "hook_Secret-42"}, {"derived secret", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg := telegramtest.New(t)
			var hook string
			s := startServe(t, func(addr string) map[string]string {
				hook = "http://" + addr + "/hooks/telegram"
				return map[string]string{"TELEGRAM_BOT_TOKEN": telegramtest.Token, "TELEGRAM_API_URL": tg.URL,
					"TELEGRAM_WEBHOOK_URL": hook, "TELEGRAM_WEBHOOK_SECRET": tc.secret}
			})
			s.logs.WaitFor(t, "configured=telegram", 1)
			want := tc.secret
			if want == "" {
				want = webhookSecret(telegramtest.Token)
			}
			url, secret := tg.Webhook()
			if url != hook || secret != want || len(tg.Calls("setWebhook")) != 1 {
				t.Fatalf("setWebhook %d times, last with %q and secret %q; want once with %q and %q",
					len(tg.Calls("setWebhook")), url, secret, hook, want)
			}

			user := telegramtest.User{ID: 78, FirstName: "Ann"}
			dm := telegramtest.Private(user)
			for _, bad := range []map[string]string{nil, {"X-Telegram-Bot-Api-Secret-Token": want + "x"}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}} {
				if code, _ := s.post(t, "/hooks/telegram", tg.MessageUpdate(dm, user, "/usage"), bad); code != http.StatusUnauthorized {
					t.Errorf("webhook call with headers %v = %d, want 401", bad, code)
				}
			}
			if code, body := s.post(t, "/hooks/telegram", tg.MessageUpdate(dm, user, "/balance"),
				map[string]string{"X-Telegram-Bot-Api-Secret-Token": want}); code != http.StatusOK {
				t.Fatalf("webhook call with the right secret = %d %q, want 200", code, body)
			}
			tg.WaitCall(t, 10*time.Second, "sendMessage", func(c telegramtest.Call) bool {
				return strings.Contains(c.Fields["text"], "Credit")
			})

			s.stop(t, telegramtest.Token, want)
			if n := len(tg.Calls("sendMessage")); n != 1 {
				t.Errorf("%d messages sent, want 1: a refused webhook call was handled", n)
			}
			if n := len(tg.Calls("getUpdates")) + len(tg.Calls("deleteWebhook")); n != 0 {
				t.Errorf("webhook mode called getUpdates or deleteWebhook %d times", n)
			}
		})
	}
}

// TestServeDiscordHTTPInteractions: with DISCORD_INTERACTIONS=http, serve
// registers the commands, opens no gateway, and answers at POST
// /discord/interactions on its own HTTP server: a signed PING with PONG, a
// signed command through the conversation, and a bad signature or a stale
// timestamp with 401.
func TestServeDiscordHTTPInteractions(t *testing.T) {
	t.Parallel()
	dc := discordtest.New(t, discordtest.Options{})
	s := startServe(t, func(string) map[string]string {
		return map[string]string{"DISCORD_BOT_TOKEN": dc.BotToken, "DISCORD_APP_ID": dc.AppID, "DISCORD_API_URL": dc.URL,
			"DISCORD_INTERACTIONS": "http", "DISCORD_PUBLIC_KEY": hex.EncodeToString(dc.PublicKey)}
	})
	s.logs.WaitFor(t, "configured=discord", 1)
	if len(dc.Commands("global")) == 0 {
		t.Fatal("no commands registered")
	}
	endpoint := "http://" + s.addr + discord.InteractionsPath

	ping := []byte(`{"id":"1","application_id":"` + dc.AppID + `","type":1,"token":"t","version":1}`)
	sig, stamp := dc.Sign(ping, time.Now(), nil)
	res, body, err := dc.PostRaw(endpoint, ping, sig, stamp)
	if err != nil || res.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"type":1}` {
		t.Fatalf("signed PING = %v %v %s, want 200 PONG", err, res, body)
	}
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, signed := range map[string]func() (string, string){
		"another key":     func() (string, string) { return dc.Sign(ping, time.Now(), other) },
		"no signature":    func() (string, string) { _, st := dc.Sign(ping, time.Now(), nil); return "", st },
		"stale timestamp": func() (string, string) { return dc.Sign(ping, time.Now().Add(-6*time.Minute), nil) },
	} {
		sig, stamp := signed()
		res, body, err := dc.PostRaw(endpoint, ping, sig, stamp)
		if err != nil || res.StatusCode != http.StatusUnauthorized {
			t.Errorf("PING with %s = %v %v %s, want 401", name, err, res, body)
		}
	}

	in := dc.Command(discordtest.User{ID: "400000000000000077"}, discordtest.Where{Channel: "600000000000000077"}, "balance")
	if code := dc.Post(t, endpoint, in); code != http.StatusOK {
		t.Fatalf("signed /balance = %d, want 200", code)
	}
	if cb, ok := dc.Callback(in.ID); !ok || !strings.Contains(string(cb.Data), "Credit") {
		t.Fatalf("/balance answered %v: %s", ok, cb.Data)
	}
	if g := dc.Gateway(); g.Connections != 0 || g.Identifies != 0 {
		t.Errorf("HTTP interactions mode opened the gateway: %+v", g)
	}
	s.stop(t, dc.BotToken)
}
