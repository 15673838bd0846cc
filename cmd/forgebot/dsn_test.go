package main

import (
	"net/url"
	"os"
	"strings"
	"testing"
)

// TestDSNPasswordNeverPrinted: every error path a DATABASE_URL can take
// (refused form, missing host or database, unparsable port, unreachable
// server, a database that does not exist on a real server, a password with
// an unencoded "@" and "/", a password in the query, key=value settings)
// prints a clear line and never the password, in any encoding, on stdout or
// stderr, from every command that opens the store.
func TestDSNPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	pg, err := url.Parse(os.Getenv("TEST_DATABASE_URL"))
	if err != nil || pg.Host == "" {
		t.Fatalf("TEST_DATABASE_URL is needed (a real PostgreSQL): %q", os.Getenv("TEST_DATABASE_URL"))
	}
	const pw = "Hunter2@x/y"
	enc := url.QueryEscape(pw)
	cases := map[string]string{
		"mysql://root:" + enc + "@localhost/db": "must start with postgres://",
		pw:                                      "must start with postgres://",
		"postgres://u:" + pw + "@127.0.0.1:1/db?connect_timeout=2":                              "",
		"postgres://u:" + enc + "@127.0.0.1:1/db?connect_timeout=2":                             "cannot reach PostgreSQL at 127.0.0.1:1",
		"postgres://u:" + enc + "@host:notaport/db":                                             "not a valid PostgreSQL URL",
		"postgres://u:" + enc + "@/db":                                                          "needs a host and a database name",
		"postgres://127.0.0.1:1/db?connect_timeout=2&password=" + enc:                           "cannot reach PostgreSQL at 127.0.0.1:1",
		"host=127.0.0.1 port=1 user=u password='" + pw + "' dbname=x connect_timeout=2":         "cannot reach PostgreSQL at 127.0.0.1:1",
		"host=127.0.0.1 user=u password=" + enc:                                                 "needs a host and a database name",
		"postgres://" + pg.User.Username() + ":" + enc + "@" + pg.Host + "/no_such_db_forgebot": "no_such_db_forgebot",
	}
	for dsn, want := range cases {
		c := cli{t, dsn}
		for _, args := range [][]string{{"migrate"}, {"wallet", "show", "--user", "telegram:1"}, {"ledger", "check"}, {"serve"}} {
			r := c.run(args...)
			all := r.stdout + r.stderr
			for _, form := range []string{pw, enc, "Hunter2", url.PathEscape(pw)} {
				if strings.Contains(all, form) {
					t.Errorf("DATABASE_URL=<%s> forgebot %v printed the password (%q):\n%s", redactDSN(dsn), args, form, all)
				}
			}
			if r.code == 0 || !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("DATABASE_URL=<%s> forgebot %v = exit %d, %q; want a failure naming %q on one line", redactDSN(dsn), args, r.code, r.stderr, want)
			}
		}
	}
}

// TestKeyValueDSNAccepted: libpq's key=value form reaches a real server
// (migrate, then a wallet command), like the URL form.
func TestKeyValueDSNAccepted(t *testing.T) {
	t.Parallel()
	pg, err := url.Parse(os.Getenv("TEST_DATABASE_URL"))
	if err != nil || pg.Host == "" {
		t.Fatalf("TEST_DATABASE_URL is needed (a real PostgreSQL): %q", os.Getenv("TEST_DATABASE_URL"))
	}
	schema := "kvdsn_" + strings.ToLower(t.Name())
	dsn := "host=" + pg.Hostname() + " port=" + pg.Port() + " user=" + pg.User.Username() + " dbname=" + strings.TrimPrefix(pg.Path, "/") +
		" sslmode=disable search_path=" + schema
	s, err := openStore(t.Context(), Config{DatabaseURL: os.Getenv("TEST_DATABASE_URL")}, true)
	if err != nil {
		t.Fatal(err)
	}
	execRaw(t, s, `DROP SCHEMA IF EXISTS `+schema+` CASCADE; CREATE SCHEMA `+schema)
	t.Cleanup(func() { execRaw(t, s, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); s.Close() })
	if err := (Config{DatabaseURL: dsn}).Validate(); err != nil {
		t.Fatalf("validate %q: %v", dsn, err)
	}
	c := cli{t, dsn}
	c.ok("migrate")
	c.ok("wallet", "topup", "--user", "telegram:9", "--bucket", "credit", "--amount", "1.00", "--key", "kv-1")
	if out := c.ok("wallet", "show", "--user", "telegram:9"); !strings.Contains(out, "1.00") {
		t.Fatalf("wallet show = %q", out)
	}
}

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:s3cret@h:5432/db":                  "postgres://u:xxxxx@h:5432/db",
		"postgres://u:p@ss/w@h/db":                       "postgres://u:xxxxx@h/db",
		"host=h password='a b\\'c' dbname=d":             "host=h password=xxxxx dbname=d",
		"host=h password=plain dbname=d":                 "host=h password=xxxxx dbname=d",
		"postgres://h/db?sslmode=disable&password=s3cr3": "postgres://h/db?sslmode=disable&password=xxxxx",
		"postgres://u@h/db":                              "postgres://u@h/db",
	} {
		if got := redactDSN(in); got != want {
			t.Errorf("redactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}
