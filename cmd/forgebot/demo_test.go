package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/store/sqlite"
)

// newScreen is a terminal the test can watch.
func newScreen() *testbed.Screen { return &testbed.Screen{} }

// TestDemoConsole drives `forgebot demo` through its stdin like a user: a
// run to completion, then a run cancelled with Ctrl-C, then quit.
func TestDemoConsole(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "data", "forgebot.db")
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "data", "demo.log"))
			t.Logf("demo.log:\n%s", log)
		}
	})
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return db
		}
		return ""
	}
	in, typist := io.Pipe()
	out := newScreen()
	sig := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"demo"}, env, stdio{in: in, out: out, err: out, interrupts: sig})
	}()
	typ := func(line string) { _, _ = io.WriteString(typist, line+"\n") }

	out.WaitFor(t, "Granted $5.00 of credit", 1)
	// The metrics and health links the demo prints open, with the run
	// series at zero before the first run.
	banner := out.WaitFor(t, "/metrics)", 1)
	for path, want := range map[string]string{"/metrics)": `forgebot_runs_total{state="succeeded"} 0`, "/healthz,": "ok"} {
		i := strings.Index(banner, path)
		if i < 0 {
			t.Fatalf("the demo does not say where %s is:\n%s", strings.Trim(path, "),"), banner)
		}
		url := banner[strings.LastIndex(banner[:i], " ")+1 : i+len(path)-1]
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("open %s: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d, no %q", url, resp.StatusCode, want)
		}
	}
	typ("/research AAPL quick")
	out.WaitFor(t, "[1] Confirm", 1)
	typ("1")
	screen := out.WaitFor(t, "Receipt: http", 1) // the final message's last line
	// The demo serves its own receipt pages: the link opens.
	link := strings.Fields(screen[strings.Index(screen, "Receipt: http")+len("Receipt: "):])[0]
	if strings.HasPrefix(link, "http://127.0.0.1:8080/") {
		t.Errorf("the receipt link %s points at serve's default port", link)
	}
	resp, err := http.Get(link)
	if err != nil {
		t.Fatalf("open the receipt link: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "AAPL") {
		t.Fatalf("receipt page %s: %d\n%s", link, resp.StatusCode, page)
	}
	for _, want := range []string{"Research AAPL: succeeded", "RSI 14", "Not financial advice", "Charged $0.0", "Receipt: http", "Chart: ", "SYNTHETIC"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the final message lacks %q", want)
		}
	}
	typ("/research MSFT NVDA AMZN deep")
	out.WaitFor(t, "[1] Confirm", 2)
	seen := strings.Count(out.String(), "writing")
	typ("1")
	out.WaitFor(t, "writing", seen+1) // the deep run is streaming

	sig <- os.Interrupt
	screen = out.WaitFor(t, ": cancelled ==", 1)
	if !strings.Contains(screen, "Cancelling the run") {
		t.Errorf("no cancel notice")
	}
	typ("/usage")
	out.WaitFor(t, "cancelled: $0.", 1)
	typ("quit")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("demo exited %d:\n%s", code, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not exit")
	}
	// The wallet story is consistent afterwards.
	c := cli{t, db}
	if r := c.run("ledger", "check"); r.code != 0 || !strings.Contains(r.stdout, "ok (2 buckets, 2 holds)") {
		t.Fatalf("ledger check: %+v", r)
	}
	var w map[string]map[string]int64
	_ = json.Unmarshal([]byte(c.ok("wallet", "show", "--user", "console:you", "--json")), &w)
	if w["credit"]["held_micros"] != 0 || w["credit"]["posted_micros"] >= 5_000_000 || w["routed"]["posted_micros"] != 2_000_000 {
		t.Fatalf("wallet after the demo: %v", w)
	}
}

// TestDemoSecondInterruptQuitsWhileSettling: Ctrl-C cancels the run; a
// second one while the cancel is still settling (the database is locked by
// another writer) quits the demo within seconds.
func TestDemoSecondInterruptQuitsWhileSettling(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "data", "forgebot.db")
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return "sqlite:" + path
		}
		return ""
	}
	in, typist := io.Pipe()
	defer typist.Close()
	out := newScreen()
	sig := make(chan os.Signal, 2)
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"demo"}, env, stdio{in: in, out: out, err: out, interrupts: sig})
	}()
	typ := func(line string) { _, _ = io.WriteString(typist, line+"\n") }
	out.WaitFor(t, "Granted $5.00 of credit", 1)
	typ("/research MSFT NVDA AMZN deep")
	out.WaitFor(t, "[1] Confirm", 1)
	typ("1")
	out.WaitFor(t, "writing", 1)
	locker, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	conn, err := locker.DB.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	sig <- os.Interrupt
	out.WaitFor(t, "Ctrl-C again to quit", 1)
	sig <- os.Interrupt
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("demo exited %d:\n%s", code, out.String())
		}
	case <-time.After(8 * time.Second):
		t.Fatal("a second Ctrl-C while settling did not quit the demo")
	}
	_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
}

// TestDemoAsk: in the console, /ask runs the offline agent with a cap its
// steps meet: the card shows each step and the spend against the cap, the
// run pauses to ask, m1 (Continue) holds more, and the final message shows
// the question, the answer and every step.
func TestDemoAsk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "data", "forgebot.db")
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return db
		}
		return ""
	}
	in, typist := io.Pipe()
	defer typist.Close()
	out := newScreen()
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"demo"}, env, stdio{in: in, out: out, err: out, interrupts: make(chan os.Signal, 1)})
	}()
	typ := func(line string) { _, _ = io.WriteString(typist, line+"\n") }
	out.WaitFor(t, "Granted $5.00 of credit", 1)
	typ("/ask is NVDA overbought against the other semis? cap:0.002")
	screen := out.WaitFor(t, "[1] Confirm", 1)
	for _, want := range []string{"Ask: is NVDA overbought", "at most 12 steps", "Ask to continue", "$0.002000 cap"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the quote lacks %q", want)
		}
	}
	typ("1")
	screen = out.WaitFor(t, "m1 Continue +$0.01", 1)
	for _, want := range []string{"of at most 12:", "Paused to ask you", "w1 Wrap up now", "c1 Cancel"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the asking card lacks %q:\n%s", want, screen)
		}
	}
	typ("m1")
	screen = out.WaitFor(t, "Receipt: http", 1)
	for _, want := range []string{"succeeded", "Question: is NVDA overbought", "Answer", "Steps", "tool: scan of semis", "model: answer", "you added"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the final message lacks %q", want)
		}
	}
	typ("quit")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("demo exited %d:\n%s", code, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not exit")
	}
	if r := (cli{t, db}).run("ledger", "check"); r.code != 0 {
		t.Fatalf("ledger check: %+v", r)
	}
}
