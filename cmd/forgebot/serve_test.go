package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServe starts `forgebot serve`, reads health, metrics and a missing
// receipt over real HTTP, then drains on SIGTERM.
func TestServe(t *testing.T) {
	t.Parallel()
	s := startServe(t, func(string) map[string]string { return map[string]string{} })
	for path, want := range map[string]string{"/healthz": "ok", "/metrics": "go_goroutines", "/r/" + strings.Repeat("A", 24): "404 page not found"} {
		res, err := http.Get("http://" + s.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d %q, want %q", path, res.StatusCode, body, want)
		}
	}
	if !strings.Contains(s.logs.String(), "chat adapters") {
		t.Error("serve did not say which chat adapters run")
	}
	s.stop(t)
	if _, err := http.Get("http://" + s.addr + "/healthz"); err == nil {
		t.Fatal("still serving after SIGTERM")
	}
}
