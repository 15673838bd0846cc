package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/bots/discord/discordtest"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
)

// TestServeDiscordUnreachableAtStart: `forgebot serve` whose Discord API
// refuses connections at start keeps running: /healthz says discord is
// connecting (200, degraded), Telegram users get a quote, run it and its
// receipt page is served; once Discord answers, the slash commands are
// registered and the gateway connects, and /healthz says ok.
func TestServeDiscordUnreachableAtStart(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "forgebot.db")
	c := cli{t, db}
	c.ok("migrate")
	c.ok("wallet", "topup", "--user", "telegram:77", "--bucket", "credit", "--amount", "1.00", "--key", "outage-1")
	tg := telegramtest.New(t)
	dc := discordtest.New(t, discordtest.Options{})
	// Discord's address, where nothing listens yet.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	discordAddr := gone.Addr().String()
	gone.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{
		"DATABASE_URL": db, "FORGE_HTTP_ADDR": addr, "FORGE_MARKET": "demo",
		"TELEGRAM_BOT_TOKEN": telegramtest.Token, "TELEGRAM_API_URL": tg.URL,
		"DISCORD_BOT_TOKEN": dc.BotToken, "DISCORD_APP_ID": dc.AppID, "DISCORD_API_URL": "http://" + discordAddr,
	}
	logs := newScreen()
	sig := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"serve", "--grace", "2s"}, func(k string) string { return env[k] },
			stdio{in: strings.NewReader(""), out: logs, err: logs, interrupts: sig})
	}()
	logs.WaitFor(t, "discord: unreachable at start; retrying with backoff", 1)
	logs.WaitFor(t, "msg=serving", 1)
	healthz := func() (int, string) {
		res, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := healthz(); code != 200 || !strings.HasPrefix(body, "degraded\n") || !strings.Contains(body, "discord: connecting") ||
		!strings.Contains(body, "telegram: up") || !strings.Contains(body, "database: up") {
		t.Fatalf("healthz while Discord is unreachable: %d %q", code, body)
	}

	// Telegram serves: a quote, a confirmed run, its receipt page.
	user := telegramtest.User{ID: 77, FirstName: "Ann"}
	chat := telegramtest.Private(user)
	tg.SendText(chat, user, "/research AAPL quick")
	quote := tg.WaitCall(t, 15*time.Second, "sendMessage", func(c telegramtest.Call) bool { return strings.Contains(c.Fields["text"], "Confirm") })
	var confirm string
	m, _ := tg.Message(chat.ID, quote.MessageID)
	for _, b := range m.Buttons() {
		if strings.HasPrefix(b.Text, "Confirm") {
			confirm = b.CallbackData
		}
	}
	if confirm == "" {
		t.Fatalf("no Confirm button on %+v", m)
	}
	tg.Press(chat, user, quote.MessageID, confirm)
	var receipt string
	tg.Wait(t, 20*time.Second, "the final with its receipt link", func() bool {
		for _, m := range tg.Messages(chat.ID) {
			for _, b := range m.Buttons() {
				if strings.Contains(b.URL, "/r/") {
					receipt = b.URL
					return true
				}
			}
		}
		return false
	})
	res, err := http.Get("http://" + addr + receipt[strings.Index(receipt, "/r/"):])
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("receipt page while Discord is unreachable: %d", res.StatusCode)
	}
	if len(dc.Commands("global")) != 0 {
		t.Fatal("commands registered before Discord was reachable")
	}

	// Discord comes back: a proxy to the fake on its address.
	target, _ := url.Parse(dc.URL)
	back, err := net.Listen("tcp", discordAddr)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}
	go proxy.Serve(back)
	defer proxy.Close()
	dc.Wait(t, "commands registered and the gateway connected once Discord answers", 30*time.Second, func() bool {
		return dc.Connected() && len(dc.Commands("global")) > 0
	})
	// /healthz is polled: nothing signals its change.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(15 * time.Second)
	for code, body := healthz(); code != 200 || !strings.HasPrefix(body, "ok\n") || !strings.Contains(body, "discord: up"); code, body = healthz() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("healthz after Discord came back: %d %q", code, body)
		}
	}

	sig <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not drain")
	}
	if strings.Contains(logs.String(), dc.BotToken) || strings.Contains(logs.String(), telegramtest.Token) {
		t.Fatal("a token reached the log")
	}
}
