package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/store/sqlite"
)

// TestResearchBesideServe: a serve working the same database never takes
// the CLI's run (the CLI's job is in a queue of its own), and the CLI gets
// its result.
func TestResearchBesideServe(t *testing.T) {
	t.Parallel()
	db, _ := fundedAnn(t)
	cfg, err := loadConfig(researchEnv(db))
	if err != nil {
		t.Fatal(err)
	}
	serve, err := newApp(t.Context(), cfg, "yahoo", false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	serve.engine.Sink = research.SinkFunc(func(ev research.Event) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, ev.Run.ID)
	})
	if err := serve.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer serve.stop(5 * time.Second)
	for i := range 3 { // a serve that took the job would take some of three
		out, errb := newScreen(), newScreen()
		code := run(t.Context(), []string{"research", "AAPL", "--depth", "quick", "--yes", "--user", "cli:ann", "--json"}, researchEnv(db),
			stdio{in: strings.NewReader(""), out: out, err: errb, interrupts: make(chan os.Signal)})
		var res struct {
			State string `json:"state"`
		}
		if err := json.Unmarshal([]byte(out.String()), &res); err != nil || code != 0 || res.State != "succeeded" {
			t.Fatalf("run %d: exit %d %v\n%s\n%s", i, code, err, out.String(), errb.String())
		}
	}
	mu.Lock()
	if len(seen) != 0 {
		t.Errorf("serve worked the CLI's runs: events for %v", seen)
	}
	mu.Unlock()
	s, err := sqlite.Open(t.Context(), sqlitePath(db), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.DB.QueryContext(t.Context(), `SELECT queue FROM river_job`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	queues := map[string]bool{}
	for rows.Next() {
		var q string
		if err := rows.Scan(&q); err != nil {
			t.Fatal(err)
		}
		queues[q] = true
	}
	if len(queues) != 3 {
		t.Errorf("queues of three CLI runs = %v, want three of their own", queues)
	}
	for q := range queues {
		if !strings.HasPrefix(q, "local_") {
			t.Errorf("a CLI run went to queue %q", q)
		}
	}
}

// TestResearchQuitWhileSettling: a Ctrl-C whose settle cannot finish (the
// database is locked by another writer) still lets a second Ctrl-C end the
// command within seconds; the run settles once the lock goes, and no hold is
// left.
func TestResearchQuitWhileSettling(t *testing.T) {
	t.Parallel()
	db, c := fundedAnn(t)
	out, errb := newScreen(), newScreen()
	sig := make(chan os.Signal, 2)
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), []string{"research", "AAPL", "--depth", "standard", "--yes", "--user", "cli:ann"}, researchEnv(db),
			stdio{in: strings.NewReader(""), out: out, err: errb, interrupts: sig})
	}()
	errb.WaitFor(t, "stage 3/4", 1)
	// Another process takes the write lock: the settle waits on it.
	locker, err := sqlite.Open(t.Context(), sqlitePath(db), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	conn, err := locker.DB.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	sig <- os.Interrupt
	errb.WaitFor(t, "Ctrl-C again to quit", 1)
	start := time.Now()
	sig <- os.Interrupt
	select {
	case code := <-done:
		if code != exitCancelled || !strings.Contains(errb.String(), "quit before run") {
			t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("quitting took %s", d)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("a second Ctrl-C while settling did not quit")
	}
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// The cancelled run either settled as it stopped, or was left
	// cancelling with its hold for the next process to settle: no money
	// moved without a receipt, and the reaper ends it with nothing held.
	next, err := newApp(t.Context(), mustConfig(t, researchEnv(db)), "yahoo", false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer next.store.Close()
	// The quit command's settle goes on in this test's process (a real
	// one would have exited) once the lock is gone, and may hold the run
	// while the reaper looks: reap until the run has ended, within a bound.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := next.engine.Reap(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		runs, err := next.store.RunsOf(t.Context(), 1, 5)
		if err == nil && len(runs) == 1 && runs[0].State.Terminal() {
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("runs 30 s after the quit: %+v %v", runs, err)
		}
	}
	var w map[string]map[string]int64
	_ = json.Unmarshal([]byte(c.ok("wallet", "show", "--user", "cli:ann", "--json")), &w)
	if w["credit"]["held_micros"] != 0 {
		t.Fatalf("a hold stayed: %v", w)
	}
	if r := c.run("ledger", "check"); r.code != 0 {
		t.Fatalf("ledger check: %+v", r)
	}
}

func mustConfig(t *testing.T, env func(string) string) Config {
	t.Helper()
	cfg, err := loadConfig(env)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestResearchProgressOnTerminalAndPipe: on a terminal the progress line is
// redrawn in place; into a file or pipe it is plain lines, a few per run,
// with no cursor controls.
func TestResearchProgressOnTerminalAndPipe(t *testing.T) {
	t.Parallel()
	db, _ := fundedAnn(t)
	for _, tty := range []bool{false, true} {
		out, errb := newScreen(), newScreen()
		code := run(t.Context(), []string{"research", "AAPL", "--depth", "standard", "--yes", "--user", "cli:ann"}, researchEnv(db),
			stdio{in: strings.NewReader(""), out: out, err: errb, interrupts: make(chan os.Signal), errTerminal: tty})
		if code != 0 {
			t.Fatalf("tty=%v: exit %d\n%s", tty, code, errb.String())
		}
		e := errb.String()
		redraws := strings.Count(e, "\r\033[K")
		switch {
		case tty && redraws == 0:
			t.Errorf("on a terminal the progress is not redrawn:\n%q", e)
		case !tty && (redraws != 0 || strings.Contains(e, "\033")):
			t.Errorf("cursor controls written to a pipe:\n%q", e)
		case !tty && strings.Count(e, "stage ") > 12:
			t.Errorf("%d progress lines into a pipe:\n%s", strings.Count(e, "stage "), e)
		case !tty && !strings.Contains(e, "stage 4/4"):
			t.Errorf("no plain progress lines:\n%s", e)
		}
		if tty {
			// Each redraw fits one row: a wrapped line is not redrawn by \r.
			for _, l := range strings.Split(e, "\r\033[K")[1:] {
				if l = strings.SplitN(l, "\n", 2)[0]; len([]rune(l)) > 79 {
					t.Errorf("a redrawn line of %d characters: %q", len([]rune(l)), l)
				}
			}
		}
		if !tty {
			// Each plain line says something the one before did not
			// (the stage, queued, running): not the same words twice.
			prev := ""
			for _, l := range strings.Split(e, "\n") {
				if !strings.Contains(l, "%  stage ") {
					continue
				}
				if key := progressNoise.ReplaceAllString(l, ""); key == prev {
					t.Errorf("the same progress line twice: %q", l)
				} else {
					prev = key
				}
				if !strings.Contains(l, " held") {
					t.Errorf("a progress line without its cost of the hold: %q", l)
				}
			}
		}
	}
}
