package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// aaplData is the real AAPL CSV the market package tests against.
var aaplData, _ = filepath.Abs("../../research/market/testdata")

// fundedAnn is a migrated SQLite database where cli:ann has $1.00 of credit.
func fundedAnn(t *testing.T) (string, cli) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "forgebot.db")
	c := cli{t, db}
	c.ok("migrate")
	c.ok("wallet", "topup", "--user", "cli:ann", "--bucket", "credit", "--amount", "1.00", "--key", "ann-1")
	return db, c
}

func researchEnv(db string) func(string) string {
	return func(k string) string {
		switch k {
		case "DATABASE_URL":
			return db
		case "FORGE_MARKET":
			return "csv:" + aaplData
		}
		return ""
	}
}

func TestResearchCommand(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "forgebot.db")
	c := cli{t, db}
	c.ok("migrate")
	research := func(stdin string, args ...string) result {
		out, errb := newScreen(), newScreen()
		code := run(t.Context(), append([]string{"research"}, args...), researchEnv(db),
			stdio{in: strings.NewReader(stdin), out: out, err: errb, interrupts: make(chan os.Signal)})
		return result{code, out.String(), errb.String()}
	}
	if r := research("", "AAPL", "--depth", "quick", "--yes", "--user", "cli:ann"); r.code != exitInsufficient || !strings.Contains(r.stderr, "top up") {
		t.Fatalf("without money: %+v", r)
	}
	c.ok("wallet", "topup", "--user", "cli:ann", "--bucket", "credit", "--amount", "1.00", "--key", "ann-1")
	for _, bad := range [][]string{{"--user", "cli:ann"}, {"--depth", "quick", "--user", "cli:ann"}, {"AAPL", "--depth", "huge", "--user", "cli:ann"},
		{"MSFT", "--yes", "--user", "cli:ann"}, {"AAPL", "--user", "nobody"}, {"A", "B", "C", "D", "--depth", "quick", "--user", "cli:ann"}} {
		if r := research("", bad...); r.code != exitBadInput || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("research %v = exit %d, %s", bad, r.code, r.stderr)
		}
	}
	if r := research("n\n", "AAPL", "--user", "cli:ann"); r.code != exitCancelled || !strings.Contains(r.stderr, "Confirm and hold") {
		t.Fatalf("declined: %+v", r)
	}
	r := research("y\n", "AAPL", "--depth", "quick", "--user", "cli:ann")
	if r.code != 0 {
		t.Fatalf("research: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The report's key figures are the indicator tests' figures for AAPL as of 2017-02-16.
	// 3M runs by calendar date, from the 2016-11-16 close (research/market's fixture).
	for _, want := range []string{"as of 2017-02-16", "Close (2017-02-16, currency not given): 135.35", "SMA 20 / 50 / 200 (daily closes): 127.64 / 120.96 / 109.13",
		"RSI 14 (Wilder, daily): 88.72", "MACD (12,26,9) line / signal / hist: 4.35 / 3.80 / 0.55", "ATR 14 (Wilder, daily): 1.58",
		"Return 3M / YTD (price only, since the close dated): +23.1% since 2016-11-16 / +16.9% since 2016-12-30",
		"Not financial advice", "succeeded: charged $0.0", "Receipt: http://127.0.0.1:8080/r/"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, r.stdout)
		}
	}
	r = research("", "AAPL", "--depth", "quick", "--user", "cli:ann", "--yes", "--json")
	var out struct {
		State    string `json:"state"`
		Captured int64  `json:"captured_micros"`
		Receipt  string `json:"receipt_url"`
		Report   struct {
			Sections []struct{ Symbol string } `json:"sections"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 || out.State != "succeeded" || out.Captured <= 0 || len(out.Report.Sections) != 1 {
		t.Fatalf("--json: %v %+v\n%s", err, out, r.stdout)
	}
	if r := c.run("ledger", "check"); r.code != 0 {
		t.Fatalf("ledger check: %+v", r)
	}
}

// TestResearchCommandInterrupted: SIGINT cancels the run, settles it, exits 3.
func TestResearchCommandInterrupted(t *testing.T) {
	t.Parallel()
	db, c := fundedAnn(t)
	out, errb := newScreen(), newScreen()
	sig := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"research", "AAPL", "--depth", "standard", "--yes", "--user", "cli:ann"}, researchEnv(db),
			stdio{in: strings.NewReader(""), out: out, err: errb, interrupts: sig})
	}()
	errb.WaitFor(t, "stage 3/4", 1)
	sig <- os.Interrupt
	select {
	case code := <-done:
		if code != exitCancelled || !strings.Contains(out.String(), "cancelled: charged $0.0") {
			t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("research did not stop")
	}
	var w map[string]map[string]int64
	_ = json.Unmarshal([]byte(c.ok("wallet", "show", "--user", "cli:ann", "--json")), &w)
	// What was used is charged (the engine tests pin the amount); nothing stays held.
	if w["credit"]["held_micros"] != 0 || w["credit"]["posted_micros"] > 1_000_000 {
		t.Fatalf("wallet after the cancel: %v", w)
	}
	if r := c.run("ledger", "check"); r.code != 0 {
		t.Fatalf("ledger check: %+v", r)
	}
}

// TestResearchCommandInterruptedAtPrompt: Ctrl-C at the confirm prompt is a
// no: exit 3, nothing held, no run.
func TestResearchCommandInterruptedAtPrompt(t *testing.T) {
	t.Parallel()
	db, c := fundedAnn(t)
	before := c.ok("wallet", "ledger", "--user", "cli:ann", "--json")
	stdin, _ := io.Pipe() // nobody answers the prompt
	out, errb := newScreen(), newScreen()
	sig := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"research", "AAPL", "--user", "cli:ann"}, researchEnv(db),
			stdio{in: stdin, out: out, err: errb, interrupts: sig})
	}()
	errb.WaitFor(t, "Confirm and hold", 1)
	sig <- os.Interrupt
	select {
	case code := <-done:
		if code != exitCancelled || !strings.Contains(errb.String(), "interrupted before confirming; nothing was held") {
			t.Fatalf("exit %d\n%s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("research did not stop at the prompt")
	}
	if after := c.ok("wallet", "ledger", "--user", "cli:ann", "--json"); after != before {
		t.Fatalf("the interrupted prompt moved money:\n%s\n%s", before, after)
	}
}

// TestResearchThroughOpenAIShortcut: OPENAI_BASE_URL and OPENAI_API_KEY add
// an official route that becomes the default model; a run streams from it
// with the key, is charged at the model's list price from the provider's
// usage, and the key never reaches the output.
func TestResearchThroughOpenAIShortcut(t *testing.T) {
	t.Parallel()
	db, c := fundedAnn(t)
	api := llmtest.NewServer(t)
	api.Enqueue(llmtest.Stream("AAPL: momentum is strong; ", "RSI 14 is 88.72.").WithUsage(1500, 40))
	const key = "sk-live-abcdef123456wxyz"
	env := func(k string) string {
		switch k {
		case "OPENAI_BASE_URL":
			return api.URL()
		case "OPENAI_API_KEY":
			return key
		}
		return researchEnv(db)(k)
	}
	out, errb := newScreen(), newScreen()
	code := run(t.Context(), []string{"research", "AAPL", "--yes", "--user", "cli:ann", "--json"}, env,
		stdio{in: strings.NewReader(""), out: out, err: errb, interrupts: make(chan os.Signal)})
	var res struct {
		State    string `json:"state"`
		Captured int64  `json:"captured_micros"`
		In       int64  `json:"tokens_in"`
		Out      int64  `json:"tokens_out"`
	}
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil || code != 0 {
		t.Fatalf("exit %d, %v\n%s\n%s", code, err, out.String(), errb.String())
	}
	// gpt-4o-mini: $0.15 in / $0.60 out per 1M tokens, rounded up once.
	want := billing.Price{InputPerM: 150_000, OutputPerM: 600_000}.Cost(1500, 40)
	if res.State != "succeeded" || res.In != 1500 || res.Out != 40 || res.Captured != want.Micros() {
		t.Fatalf("result %+v, want 1500/40 tokens charged %s", res, want)
	}
	reqs := api.Requests()
	if len(reqs) != 1 || reqs[0].Model != "gpt-4o-mini" || reqs[0].BearerToken != key || !reqs[0].Stream {
		t.Fatalf("requests = %+v", reqs)
	}
	if all := out.String() + errb.String(); strings.Contains(all, key) || !strings.Contains(errb.String(), "sk-...wxyz") {
		t.Fatalf("the key leaked, or the quote did not show it masked:\n%s", all)
	}
	if r := c.run("ledger", "check"); r.code != 0 {
		t.Fatalf("ledger check: %+v", r)
	}
}

// TestResearchPrintsNoRawEscape: `forgebot research` with a model whose
// output carries a terminal escape, a right-to-left override and a NUL
// prints the report (text and JSON) without any of them.
func TestResearchPrintsNoRawEscape(t *testing.T) {
	t.Parallel()
	for _, asJSON := range []bool{false, true} {
		db, _ := fundedAnn(t)
		api := llmtest.NewServer(t)
		api.SetDefault(llmtest.Stream("AAPL \x1b[2J\x1b]0;pwned\x07", " rises \u202Eevil\u202C\x00 done").WithUsage(100, 10))
		env := func(k string) string {
			switch k {
			case "OPENAI_BASE_URL":
				return api.URL()
			case "OPENAI_API_KEY":
				return "sk-test-escape1234"
			}
			return researchEnv(db)(k)
		}
		args := []string{"research", "AAPL", "--yes", "--user", "cli:ann"}
		if asJSON {
			args = append(args, "--json")
		}
		out, errb := newScreen(), newScreen()
		if code := run(t.Context(), args, env, stdio{in: strings.NewReader(""), out: out, err: errb, interrupts: make(chan os.Signal)}); code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
		}
		// The progress line's own "\r\x1b[K" (clear the line) is forgebot's,
		// not the model's.
		all := out.String() + strings.ReplaceAll(errb.String(), "\r\x1b[K", "")
		if !strings.Contains(all, "rises") {
			t.Fatalf("the model's text is missing:\n%s", all)
		}
		for _, bad := range []string{"\x1b", "\x07", "\x00", "\u202E", `\u001b`, `\u0000`, `\u202e`, `\u0007`} {
			if strings.Contains(all, bad) {
				t.Errorf("json=%v: output has %q:\n%q", asJSON, bad, all)
			}
		}
	}
}

// TestResearchInterruptedWhileQuoting: market data that does not answer
// holds up the quote; Ctrl-C (or SIGTERM, which arrives the same way) ends
// the command within seconds, not at the fetch's 30 s timeout: exit 3,
// nothing held.
func TestResearchInterruptedWhileQuoting(t *testing.T) {
	t.Parallel()
	db, c := fundedAnn(t)
	asked := make(chan struct{}, 1)
	release := make(chan struct{})
	yahoo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		select { // never answers
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer yahoo.Close()
	defer close(release) // first: a fetch the market cache kept going ends before Close waits for it
	env := func(k string) string {
		switch k {
		case "FORGE_MARKET":
			return "yahoo"
		case "FORGE_YAHOO_URL":
			return yahoo.URL
		}
		return researchEnv(db)(k)
	}
	before := c.ok("wallet", "ledger", "--user", "cli:ann", "--json")
	out, errb := newScreen(), newScreen()
	sig := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"research", "AAPL", "--yes", "--user", "cli:ann"}, env,
			stdio{in: strings.NewReader(""), out: out, err: errb, interrupts: sig})
	}()
	select {
	case <-asked:
	case <-time.After(20 * time.Second):
		t.Fatal("the quote never asked for market data")
	}
	sig <- syscall.SIGTERM
	start := time.Now()
	select {
	case code := <-done:
		if code != exitCancelled || !strings.Contains(errb.String(), "interrupted while the quote was being made; nothing was held") {
			t.Fatalf("exit %d\n%s", code, errb.String())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stopping took %s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a signal while quoting did not end the command")
	}
	if after := c.ok("wallet", "ledger", "--user", "cli:ann", "--json"); after != before {
		t.Fatalf("the interrupted quote moved money:\n%s\n%s", before, after)
	}
}

// TestResearchErrorReferenceIsLogged: an error shown by reference (market
// data down) says where the reference is, and the log there has it with
// the cause.
func TestResearchErrorReferenceIsLogged(t *testing.T) {
	t.Parallel()
	db, _ := fundedAnn(t)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	defer down.Close()
	env := func(k string) string {
		switch k {
		case "FORGE_MARKET":
			return "yahoo"
		case "FORGE_YAHOO_URL":
			return down.URL
		}
		return researchEnv(db)(k)
	}
	out, errb := newScreen(), newScreen()
	code := run(t.Context(), []string{"research", "AAPL", "--yes", "--user", "cli:ann"}, env,
		stdio{in: strings.NewReader(""), out: out, err: errb, interrupts: make(chan os.Signal)})
	msg := errb.String()
	logPath := filepath.Join(filepath.Dir(sqlitePath(db)), "cli.log")
	i := strings.Index(msg, "(ref ")
	if code != exitFailure || i < 0 || !strings.Contains(msg, "; the reference is in "+logPath) {
		t.Fatalf("exit %d: %s", code, msg)
	}
	ref := strings.Fields(msg[i+len("(ref "):])[0]
	ref = strings.TrimSuffix(strings.TrimSuffix(ref, ";"), ")")
	log, err := os.ReadFile(logPath)
	if err != nil || !strings.Contains(string(log), "ref="+ref) || !strings.Contains(string(log), "502") {
		t.Fatalf("the log lacks ref %s with its cause (%v):\n%s", ref, err, log)
	}
}
