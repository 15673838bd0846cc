package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// cluster is a PostgreSQL cluster of one test's own, so the test may stop
// and restart it without touching the shared one.
type cluster struct {
	t    *testing.T
	bin  string // the server binaries' directory
	dir  string // data directory (and socket directory)
	port int
	cred *syscall.Credential // whom the server runs as (initdb refuses root)
}

// pgBin finds the PostgreSQL server binaries: /usr/lib/postgresql/15/bin
// (Debian's layout, which `make test` installs with apt when missing), any
// other version there, or initdb on the PATH. Without them the test fails:
// it never skips.
func pgBin(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/lib/postgresql/15/bin/initdb"); err == nil {
		return "/usr/lib/postgresql/15/bin"
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(found, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[j]))))
		return vi > vj
	})
	if len(found) > 0 {
		return filepath.Dir(found[0])
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	t.Fatal("the PostgreSQL server binaries (initdb, pg_ctl) are needed for a cluster of the test's own: none in /usr/lib/postgresql/*/bin or on the PATH; `make test` installs them (apt-get install postgresql)")
	return ""
}

// newCluster makes and starts a cluster in a fresh directory; it is
// stopped and removed when the test ends.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: pgBin(t)}
	dir, err := os.MkdirTemp("", "forgebot-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	t.Cleanup(func() {
		_ = c.ctl("stop", "-m", "immediate")
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: the cluster belongs to postgres.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, the cluster needs the postgres OS user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if out, err := c.cmd("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	if err := c.ctl("start"); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cluster) data() string { return filepath.Join(c.dir, "data") }

func (c *cluster) cmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd
}

// ctl runs pg_ctl: start (waiting until it accepts connections), stop.
func (c *cluster) ctl(action string, args ...string) error {
	a := []string{action, "-D", c.data(), "-w", "-t", "60"}
	if action == "start" {
		a = append(a, "-l", filepath.Join(c.dir, "server.log"), "-o",
			fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off", c.port, c.dir))
	}
	if out, err := c.cmd("pg_ctl", append(a, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl %s: %v\n%s", action, err, out)
	}
	return nil
}

func (c *cluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// TestServePostgresRestart: `forgebot serve` on a cluster of its own, four
// runs streaming from a model route when PostgreSQL stops (fast shutdown:
// every connection dropped) and, once /healthz said so and the schedule
// claimer logged its backoff, starts again. The runs settle afterwards
// (each charged its usage, no hold left open), the pool reconnects (a new
// quote and receipt pages work), `ledger check` is clean, and while the
// database was down every failing loop logged with backoff, not on every
// tick.
func TestServePostgresRestart(t *testing.T) {
	t.Parallel()
	pg := newCluster(t)
	c := cli{t, pg.url()}
	c.ok("migrate")
	users := []telegramtest.User{{ID: 81, FirstName: "A"}, {ID: 82, FirstName: "B"}, {ID: 83, FirstName: "C"}, {ID: 84, FirstName: "D"}}
	for _, u := range users {
		c.ok("wallet", "topup", "--user", "telegram:"+strconv.FormatInt(u.ID, 10), "--bucket", "credit", "--amount", "1.00", "--key", "pgr-"+strconv.FormatInt(u.ID, 10))
	}
	llm := llmtest.NewServer(t)
	gate := make(chan struct{})
	for range users {
		llm.Enqueue(llmtest.Stream("The report ", "holds up.").WithUsage(1500, 40).WithGate(gate))
	}
	llm.SetDefault(llmtest.Stream("A later report.").WithUsage(1500, 40))
	tg := telegramtest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{
		"DATABASE_URL": pg.url(), "FORGE_HTTP_ADDR": addr, "FORGE_MARKET": "demo",
		"TELEGRAM_BOT_TOKEN": telegramtest.Token, "TELEGRAM_API_URL": tg.URL,
		"OPENAI_BASE_URL": llm.URL(), "OPENAI_API_KEY": "sk-test-pgrestart1", "OPENAI_MODEL": "gpt-4o-mini",
	}
	logs := newScreen()
	sig := make(chan os.Signal, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"serve", "--grace", "5s"}, func(k string) string { return env[k] },
			stdio{in: strings.NewReader(""), out: logs, err: logs, interrupts: sig})
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve's log:\n%s", logs.String())
			if b, err := os.ReadFile(filepath.Join(pg.dir, "server.log")); err == nil {
				t.Logf("PostgreSQL's log:\n%s", b)
			}
		}
	})
	logs.WaitFor(t, "msg=serving", 1)
	healthz := func(want int, prefix string) string {
		t.Helper()
		tick := time.NewTicker(50 * time.Millisecond) // /healthz is polled: nothing signals its change
		defer tick.Stop()
		deadline := time.After(30 * time.Second)
		for {
			code, body := 0, ""
			if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				code, body = res.StatusCode, string(b)
			}
			if code == want && strings.HasPrefix(body, prefix) {
				return body
			}
			select {
			case <-tick.C:
			case <-deadline:
				t.Fatalf("healthz answered %d %q, want %d %q", code, body, want, prefix)
			}
		}
	}
	confirm := func(u telegramtest.User, symbol string) {
		t.Helper()
		chat := telegramtest.Private(u)
		tg.SendText(chat, u, "/research "+symbol+" quick")
		var data string
		var msg int
		tg.Wait(t, 30*time.Second, "a quote with its Confirm button", func() bool {
			for _, m := range tg.Messages(chat.ID) {
				for _, b := range m.Buttons() {
					if strings.HasPrefix(b.Text, "Confirm") {
						data, msg = b.CallbackData, m.ID
						return true
					}
				}
			}
			return false
		})
		tg.Press(chat, u, msg, data)
		tg.Wait(t, 30*time.Second, "the quote confirmed", func() bool {
			m, _ := tg.Message(chat.ID, msg)
			return !strings.Contains(m.Markup, data)
		})
	}
	receipts := func(u telegramtest.User) []string {
		var out []string
		for _, m := range tg.Messages(u.ID) {
			for _, b := range m.Buttons() {
				if strings.Contains(b.URL, "/r/") {
					out = append(out, b.URL[strings.Index(b.URL, "/r/"):])
				}
			}
		}
		return out
	}

	for i, u := range users {
		confirm(u, []string{"AAPL", "NVDA", "MSFT", "SPY"}[i])
	}
	select { // every run is streaming its report
	case <-llm.Received(len(users)):
	case <-time.After(60 * time.Second):
		t.Fatalf("%d of %d runs reached the model", len(llm.Requests()), len(users))
	}

	// The outage: every connection is dropped, then nothing answers.
	if err := pg.ctl("stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}
	downAt := len(logs.String())
	if body := healthz(503, "down\n"); !strings.Contains(body, "database: down") {
		t.Fatalf("healthz during the outage: %q", body)
	}
	logs.WaitFor(t, `msg="claim schedules" err=`, 2) // the claimer's first failure and its first backoff step
	if err := pg.ctl("start"); err != nil {
		t.Fatal(err)
	}
	outage := logs.String()[downAt:]
	close(gate) // the streams finish once the database is back

	for _, u := range users {
		tg.Wait(t, 60*time.Second, fmt.Sprintf("user %d's final with its receipt link", u.ID), func() bool { return len(receipts(u)) > 0 })
	}
	healthz(200, "ok\n")
	logs.WaitFor(t, `msg="claim schedules works again"`, 1)
	for _, u := range users {
		res, err := http.Get("http://" + addr + receipts(u)[0])
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("a receipt page after the restart answered %d", res.StatusCode)
		}
	}
	// The pool took new connections: a fresh quote, confirm and run work.
	confirm(users[0], "AAPL")
	tg.Wait(t, 60*time.Second, "the run after the restart", func() bool { return len(receipts(users[0])) > 1 })

	sig <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not drain")
	}
	if out := c.ok("ledger", "check"); !strings.Contains(out, "ok") {
		t.Fatalf("ledger check: %s", out)
	}
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, pg.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var states []string
	rows, err := conn.Query(ctx, `SELECT state FROM runs ORDER BY created_at`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		states = append(states, s)
	}
	if rows.Err() != nil || len(states) != len(users)+1 || slices.ContainsFunc(states, func(s string) bool { return s != "succeeded" }) {
		t.Fatalf("runs ended %v (%v), want %d succeeded", states, rows.Err(), len(users)+1)
	}
	var open, overCap int
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'open'), count(*) FILTER (WHERE captured > amount) FROM holds`).Scan(&open, &overCap); err != nil {
		t.Fatal(err)
	}
	if open != 0 || overCap != 0 {
		t.Fatalf("%d holds left open, %d captured beyond their amount", open, overCap)
	}

	// While the database was down, repeated failures were logged with
	// backoff: a handful of lines per loop, not one per tick.
	perLoop := map[string]int{}
	for _, l := range strings.Split(outage, "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			msg := l
			if i := strings.Index(l, "msg="); i >= 0 {
				msg = l[i:]
				if j := strings.Index(msg, " err="); j > 0 {
					msg = msg[:j]
				}
			}
			perLoop[msg]++
		}
	}
	for msg, n := range perLoop {
		if n > 4 {
			t.Errorf("%q logged %d times during an outage of a few seconds", msg, n)
		}
	}
	t.Logf("logged during the outage: %v", perLoop)
}
