package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/store/postgres/pgtest"
)

// cli runs forgebot in-process against one database.
type cli struct {
	t     *testing.T
	dbURL string
}

type result struct {
	code           int
	stdout, stderr string
}

func (c cli) run(args ...string) result {
	c.t.Helper()
	var out, errb bytes.Buffer
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return c.dbURL
		}
		return ""
	}
	code := run(c.t.Context(), args, env, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	return result{code, out.String(), errb.String()}
}

func (c cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("forgebot %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// stores runs fn against a fresh SQLite file and a fresh PostgreSQL schema.
func stores(t *testing.T, fn func(t *testing.T, c cli)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, cli{t, "sqlite:" + filepath.Join(t.TempDir(), "data", "forgebot.db")})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, cli{t, pgtest.SchemaURL(t)})
	})
}

func walletJSON(t *testing.T, c cli, user string) map[string]map[string]int64 {
	t.Helper()
	var got map[string]map[string]int64
	if err := json.Unmarshal([]byte(c.ok("wallet", "show", "--user", user, "--json")), &got); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestWalletCommands(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, c cli) {
		if r := c.run("wallet", "show", "--user", "telegram:42"); r.code != 2 || !strings.Contains(r.stderr, "forgebot migrate") {
			t.Fatalf("show before migrate = %+v, want exit 2 telling to migrate", r)
		}
		if out := c.ok("migrate"); !strings.Contains(out, "applied 0001_ledger") {
			t.Fatalf("migrate printed %q", out)
		}
		if out := c.ok("migrate"); !strings.Contains(out, "up to date") {
			t.Fatalf("second migrate printed %q", out)
		}
		out := c.ok("wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "5.00", "--key", "pay-1", "--note", "stripe ch_1")
		if !strings.Contains(out, "topped up telegram:42 credit $5.00") {
			t.Fatalf("topup printed %q", out)
		}
		if out := c.ok("wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "5.00", "--key", "pay-1"); !strings.Contains(out, "already applied") {
			t.Fatalf("repeated topup printed %q", out)
		}
		c.ok("wallet", "topup", "--user", "telegram:42", "--bucket", "routed", "--amount", "$0.000350", "--key", "pay-2")

		want := `{"credit":{"available_micros":5000000,"held_micros":0,"posted_micros":5000000},"routed":{"available_micros":350,"held_micros":0,"posted_micros":350}}`
		if got, _ := json.Marshal(walletJSON(t, c, "telegram:42")); string(got) != want {
			t.Fatalf("wallet show --json = %s, want %s", got, want)
		}
		raw := c.ok("wallet", "show", "--user", "telegram:42", "--json")
		if !strings.HasPrefix(raw, `{"credit":{"posted_micros":5000000,"held_micros":0,"available_micros":5000000},"routed":{`) {
			t.Fatalf("wallet show --json field order: %s", raw)
		}
		if out := c.ok("wallet", "show", "--user", "telegram:42"); !strings.Contains(out, "$0.00035") || !strings.Contains(out, "$5.00") {
			t.Fatalf("wallet show printed %q", out)
		}

		var entries []map[string]any
		if err := json.Unmarshal([]byte(c.ok("wallet", "ledger", "--user", "telegram:42", "--json")), &entries); err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 || entries[0]["amount_micros"] != 350.0 || entries[1]["reference"] != "operator: stripe ch_1" || entries[1]["kind"] != "topup" {
			t.Fatalf("wallet ledger --json = %v", entries)
		}
		if out := c.ok("wallet", "ledger", "--user", "telegram:42", "--limit", "1"); strings.Count(out, "topup") != 1 {
			t.Fatalf("wallet ledger --limit 1 printed %q", out)
		}
		if out := c.ok("ledger", "check"); !strings.Contains(out, "ledger check: ok") {
			t.Fatalf("ledger check printed %q", out)
		}
	})
}

// TestBadInput: every kind of bad input gets one clear line on stderr, exit
// status 2, and writes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, c cli) {
		c.ok("migrate")
		c.ok("wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "1.00", "--key", "k1")
		before := c.ok("wallet", "ledger", "--user", "telegram:42", "--json")
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"wallet", "show", "--user", "telegram:99"}, "unknown user telegram:99"},
			{[]string{"wallet", "ledger", "--user", "discord:1"}, "unknown user discord:1"},
			{[]string{"wallet", "show"}, "--user is required"},
			{[]string{"wallet", "show", "--user", "nocolon"}, "want platform:id"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "gold", "--amount", "1", "--key", "x"}, `unknown bucket "gold"`},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "0", "--key", "x"}, "more than zero"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "-1", "--key", "x"}, "more than zero"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "1.2.3", "--key", "x"}, "not a dollar amount"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "0.0000001", "--key", "x"}, "more than 6 decimal places"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "1"}, "--key is required"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "1", "--amount=2", "--key", "k9"}, "--amount is given more than once"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "1", "--key", "expire:1"}, "is reserved"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "1", "--key", "a\nb"}, "control characters"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "1", "--key", strings.Repeat("k", 201)}, "longer than 200"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "2.00", "--key", "k1"}, "already used for a different top-up"},
			{[]string{"wallet", "topup", "--user", "telegram:42", "--bucket", "routed", "--amount", "1.00", "--key", "k1"}, "already used for a different top-up"},
			{[]string{"wallet", "topup", "--user", "telegram:43", "--bucket", "credit", "--amount", "1.00", "--key", "k1"}, "already used for a different top-up"},
			{[]string{"wallet", "ledger", "--user", "telegram:42", "--limit", "0"}, "--limit must be between 1 and 1000"},
			{[]string{"wallet", "ledger", "--user", "telegram:42", "--limit", "many"}, "invalid value"},
			{[]string{"wallet", "show", "--user", "telegram:42", "extra"}, `unexpected argument "extra"`},
			{[]string{"wallet", "pay"}, `unknown wallet command "pay"`},
			{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		} {
			r := c.run(tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("forgebot %s = exit %d, stderr %q; want exit 2 and one line with %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
			}
		}
		if after := c.ok("wallet", "ledger", "--user", "telegram:42", "--json"); after != before {
			t.Fatalf("bad input changed the ledger:\nbefore %s\nafter  %s", before, after)
		}
		if r := c.run("wallet", "show", "--user", "telegram:43"); r.code != 2 {
			t.Fatalf("a refused topup created telegram:43: %+v", r)
		}
	})
}

func TestBadDatabaseURL(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]string{
		"mysql://root@localhost/db": `must start with postgres://`,
		"sqlite:":                   "needs a file path",
		"postgres://":               "needs a host and a database name",
		"postgresql://127.0.0.1":    "needs a host and a database name",
		"postgres://127.0.0.1:1/nothing?connect_timeout=2":        "cannot reach PostgreSQL at 127.0.0.1:1",
		"postgres://u:secret@host:notaport/db":                    "not a valid PostgreSQL URL",
		"sqlite:" + filepath.Join(t.TempDir(), "missing", "x.db"): "run `forgebot migrate` first",
	} {
		c := cli{t, url}
		for _, args := range [][]string{{"wallet", "show", "--user", "telegram:1"}, {"ledger", "check"}} {
			r := c.run(args...)
			if r.code != 2 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "secret") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("DATABASE_URL=%s forgebot %v = exit %d, %q; want exit 2 with %q and no password", url, args, r.code, r.stderr, want)
			}
		}
	}
}

// TestLedgerCheckAfterWorkload runs the concurrency workload on each store,
// then `forgebot ledger check`, then corrupts the data and expects the check
// to name the violation and exit 1.
func TestLedgerCheckAfterWorkload(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, c cli) {
		c.ok("migrate")
		c.ok("wallet", "topup", "--user", "telegram:42", "--bucket", "credit", "--amount", "1.00", "--key", "seed")
		cfg, err := loadConfig(func(k string) string {
			if k == "DATABASE_URL" {
				return c.dbURL
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		s, err := openStore(t.Context(), cfg, false)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := t.Context()
		acc, err := s.AccountOf(ctx, billing.Identity{Platform: "telegram", ExternalID: "42"})
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			holds   []billing.Hold
			refused int
		)
		for i := range 64 {
			wg.Go(func() {
				h, err := s.PlaceHold(ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: 100_000,
					TTL: time.Minute, Key: fmt.Sprintf("w-%d", i)})
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					holds = append(holds, h)
				} else {
					refused++
				}
			})
		}
		wg.Wait()
		if len(holds) != 10 || refused != 54 {
			t.Fatalf("%d holds, %d refused; want 10 and 54", len(holds), refused)
		}
		for i, h := range holds {
			switch {
			case i < 5:
				_, err = s.CaptureHold(ctx, billing.CaptureRequest{HoldID: h.ID, Amount: billing.Money(i * 20_000), Key: fmt.Sprintf("c-%d", i)})
			default:
				_, err = s.ReleaseHold(ctx, billing.ReleaseRequest{HoldID: h.ID, Key: fmt.Sprintf("r-%d", i)})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if out := c.ok("ledger", "check"); !strings.Contains(out, "ok (2 buckets, 10 holds)") {
			t.Fatalf("ledger check printed %q", out)
		}
		wantPosted := int64(1_000_000 - (0+1+2+3+4)*20_000)
		if got := walletJSON(t, c, "telegram:42")["credit"]; got["posted_micros"] != wantPosted || got["held_micros"] != 0 {
			t.Fatalf("credit = %v, want posted %d", got, wantPosted)
		}

		corrupt := `UPDATE balances SET posted = posted + 1 WHERE bucket = 'credit'`
		execRaw(t, s, corrupt)
		r := c.run("ledger", "check")
		if r.code != 1 || !strings.Contains(r.stdout, "violation: account 1 credit: posted $0.800001 but posted entries sum to $0.80") {
			t.Fatalf("ledger check on corrupt data = %+v", r)
		}
	})
}

// TestBadConfig: every configuration value that can be wrong stops the
// command with one line and exit 2, before anything is written.
func TestBadConfig(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "forgebot.db")
	cli{t, db}.ok("migrate")
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"market":        {map[string]string{"FORGE_MARKET": "bloomberg"}, "FORGE_MARKET must be"},
		"admins":        {map[string]string{"FORGE_ADMINS": "telegram:1,nobody"}, "FORGE_ADMINS"},
		"quote ttl":     {map[string]string{"FORGE_QUOTE_TTL": "-5m"}, "FORGE_QUOTE_TTL"},
		"schedule gap":  {map[string]string{"FORGE_SCHEDULE_MIN_INTERVAL": "often"}, "FORGE_SCHEDULE_MIN_INTERVAL"},
		"catch-up":      {map[string]string{"FORGE_SCHEDULE_CATCHUP": "0s"}, "FORGE_SCHEDULE_CATCHUP"},
		"max schedules": {map[string]string{"FORGE_SCHEDULE_MAX_PER_ACCOUNT": "-3"}, "FORGE_SCHEDULE_MAX_PER_ACCOUNT"},
		"public url":    {map[string]string{"FORGE_PUBLIC_URL": "ftp://x"}, "FORGE_PUBLIC_URL"},
		"benchmarks":    {map[string]string{"FORGE_BENCHMARKS": "bonds=TLT"}, "FORGE_BENCHMARKS"},
		"benchmark sym": {map[string]string{"FORGE_BENCHMARKS": "equity=../x"}, "FORGE_BENCHMARKS"},
		"openai half":   {map[string]string{"OPENAI_BASE_URL": "http://x"}, "OPENAI_BASE_URL and OPENAI_API_KEY go together"},
		"openai price":  {map[string]string{"OPENAI_BASE_URL": "http://x", "OPENAI_API_KEY": "sk-1", "OPENAI_MODEL": "mystery-1"}, "OPENAI_PRICE is needed"},
		"catalog file":  {map[string]string{"FORGE_CATALOG": "/nonexistent/catalog.json"}, "FORGE_CATALOG"},
		"catalog shape": {map[string]string{"FORGE_CATALOG": writeFile(t, `{"routes":[{"id":"x","kind":"free","model":"m","base_url":"u"}]}`)}, "kind must be official or routed"},
	} {
		env := func(k string) string {
			if k == "DATABASE_URL" {
				return db
			}
			return tc.env[k]
		}
		var out, errb bytes.Buffer
		code := run(t.Context(), []string{"research", "AAPL", "--yes"}, env, stdio{in: strings.NewReader(""), out: &out, err: &errb})
		if code != 2 || !strings.Contains(errb.String(), tc.want) || strings.Count(errb.String(), "\n") != 1 || strings.Contains(errb.String(), "sk-1") {
			t.Errorf("%s: exit %d, %q; want exit 2 with %q", name, code, errb.String(), tc.want)
		}
	}
	if r := (cli{t, db}).run("wallet", "show", "--user", "cli:local"); r.code != 2 || !strings.Contains(r.stderr, "unknown user") {
		t.Fatalf("bad config wrote something: %+v", r)
	}
}

func writeFile(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHelpOnEveryCommand: --help (and -h) on every command and command group
// prints its usage on stdout and exits 0, writing nothing, even with a
// configuration that would not load.
func TestHelpOnEveryCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, env := range []func(string) string{
		func(k string) string {
			if k == "DATABASE_URL" {
				return "sqlite:" + filepath.Join(dir, "none", "forgebot.db")
			}
			return ""
		},
		func(k string) string {
			if k == "FORGE_PUBLIC_URL" {
				return "not a url"
			}
			return ""
		},
	} {
		for _, cmd := range [][]string{{"migrate"}, {"wallet", "topup"}, {"wallet", "show"}, {"wallet", "ledger"}, {"wallet"},
			{"ledger", "check"}, {"ledger", "sweep"}, {"ledger"}, {"demo"}, {"research"}, {"serve"}} {
			for _, h := range []string{"--help", "-h"} {
				var out, errb bytes.Buffer
				code := run(t.Context(), append(append([]string{}, cmd...), h), env, stdio{in: strings.NewReader(""), out: &out, err: &errb})
				if code != 0 || !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), "forgebot "+strings.Join(cmd, " ")) || errb.Len() != 0 {
					t.Errorf("forgebot %s %s: exit %d\n%s\n%s", strings.Join(cmd, " "), h, code, out.String(), errb.String())
				}
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "none")); err == nil {
		t.Error("help created a database")
	}
}
