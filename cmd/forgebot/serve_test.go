package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestServe starts `forgebot serve`, reads health, metrics and a missing
// receipt over real HTTP, then drains on SIGTERM. /metrics is not on the
// public listener without a token; with FORGE_METRICS_TOKEN it is, behind
// the bearer token.
func TestServe(t *testing.T) {
	t.Parallel()
	const token = "a-metrics-token-of-some-length"
	s := startServe(t, func(string) map[string]string { return map[string]string{"FORGE_METRICS_TOKEN": token} })
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("metrics with the token: %d %.200s", res.StatusCode, body)
	}
	for path, want := range map[string]string{"/healthz": "ok\ndatabase: up\n", "/metrics": "unauthorized", "/r/" + strings.Repeat("A", 24): "404 page not found"} {
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

// TestServeMetricsOwnListener: with FORGE_METRICS_ADDR, /metrics is served
// there and not on the public listener.
func TestServeMetricsOwnListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := ln.Addr().String()
	ln.Close()
	s := startServe(t, func(string) map[string]string { return map[string]string{"FORGE_METRICS_ADDR": maddr} })
	s.logs.WaitFor(t, "msg=metrics", 1)
	for url, want := range map[string]int{"http://" + maddr + "/metrics": 200, "http://" + s.addr + "/metrics": 404} {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", url, res.StatusCode, want)
		}
	}
	s.stop(t)
}
