package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServe starts `forgebot serve`, reads health, metrics and a missing
// receipt over real HTTP, then drains on SIGTERM.
func TestServe(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "forgebot.db")
	cli{t, db}.ok("migrate")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := func(k string) string {
		return map[string]string{"DATABASE_URL": db, "FORGE_HTTP_ADDR": addr, "FORGE_MARKET": "demo"}[k]
	}
	logs := newScreen()
	sig := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"serve", "--grace", "2s"}, env, stdio{in: strings.NewReader(""), out: logs, err: logs, interrupts: sig})
	}()
	logs.WaitFor(t, "msg=serving", 1)
	for path, want := range map[string]string{"/healthz": "ok", "/metrics": "go_goroutines", "/r/" + strings.Repeat("A", 24): "404 page not found"} {
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d %q, want %q", path, res.StatusCode, body, want)
		}
	}
	if !strings.Contains(logs.String(), "chat adapters") {
		t.Error("serve did not say which chat adapters run")
	}
	sig <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not drain")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("still serving after SIGTERM")
	}
}
