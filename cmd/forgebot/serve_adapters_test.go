package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/bots/discord/discordtest"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
)

// TestServeWithAdapters: `forgebot serve` with both chat adapters pointed at
// the fakes: each starts, publishes its commands and answers a user, and the
// whole thing drains on SIGTERM.
func TestServeWithAdapters(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "forgebot.db")
	cli{t, db}.ok("migrate")
	tg := telegramtest.New(t)
	dc := discordtest.New(t, discordtest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{
		"DATABASE_URL": db, "FORGE_HTTP_ADDR": addr, "FORGE_MARKET": "demo",
		"TELEGRAM_BOT_TOKEN": telegramtest.Token, "TELEGRAM_API_URL": tg.URL,
		"DISCORD_BOT_TOKEN": dc.BotToken, "DISCORD_APP_ID": dc.AppID, "DISCORD_API_URL": dc.URL,
	}
	logs := newScreen()
	sig := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"serve", "--grace", "2s"}, func(k string) string { return env[k] },
			stdio{in: strings.NewReader(""), out: logs, err: logs, interrupts: sig})
	}()
	logs.WaitFor(t, "configured=\"discord, telegram\"", 1)
	tg.Wait(t, 10*time.Second, "setMyCommands", func() bool { return strings.Contains(tg.Commands(), "research") })
	dc.Wait(t, "gateway connected and commands registered", 10*time.Second, func() bool {
		return dc.Connected() && len(dc.Commands("global")) > 0
	})

	user := telegramtest.User{ID: 77, FirstName: "Ann"}
	tg.SendText(telegramtest.Private(user), user, "/balance")
	tg.WaitCall(t, 10*time.Second, "sendMessage", func(c telegramtest.Call) bool {
		return strings.Contains(c.Fields["text"], "Credit")
	})

	sig <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not drain")
	}
	for _, secret := range []string{telegramtest.Token, dc.BotToken} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("a token reached the log")
		}
	}
}
