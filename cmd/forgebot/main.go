// Command forgebot runs forgebot: its store migrations, wallet and ledger
// tools, and the demo. It only reads configuration and wires packages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/tokensforge/forgebot/bots/console"
)

func main() {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr, interrupts: sig,
		outTerminal: console.IsTerminal(os.Stdout), errTerminal: console.IsTerminal(os.Stderr)}))
}

// Exit statuses.
const (
	exitOK           = 0
	exitFailure      = 1 // something went wrong at run time, or ledger check found violations
	exitBadInput     = 2 // bad flags, values or configuration; nothing was written
	exitCancelled    = 3 // the run was cancelled
	exitInsufficient = 4 // the balance does not cover the quote
)

const usage = `forgebot: LLM trading research from chat, with a wallet that shows what it costs.

Usage:
  forgebot migrate                      apply database migrations
  forgebot wallet topup --user ID --bucket credit|routed --amount 5.00 --key KEY [--note TEXT]
  forgebot wallet show --user ID [--json]
  forgebot wallet ledger --user ID [--limit N] [--json]
  forgebot ledger check                 verify the ledger's invariants (exit 1 on a violation)
  forgebot ledger sweep                 release holds past their time to live
  forgebot demo                         the console chat on the embedded store (offline analyst, demo data)
  forgebot research SYMBOLS... [--depth quick|standard|deep|agent] [--cap 0.50] [--model M] [--user ID] [--yes] [--json]
  forgebot ask "QUESTION" [--cap 0.50] [--ask-off] [--model M] [--user ID] [--yes] [--json]
  forgebot serve                        HTTP server (receipts, health, metrics), run workers and chat adapters

ID is platform:id, like telegram:42. DATABASE_URL selects the store:
postgres://... or sqlite:PATH (default sqlite:./forgebot-data/forgebot.db).
`

// cliError carries the exit status a failure should produce.
type cliError struct {
	code int
	err  error
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

// badInput marks an error as the user's input: exit 2, nothing written.
func badInput(format string, args ...any) error {
	return &cliError{code: exitBadInput, err: fmt.Errorf(format, args...)}
}

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, io_ stdio) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(io_.out, usage)
		return exitOK
	}
	if fs := helpFor(args); fs != nil {
		printHelp(io_.out, fs)
		return exitOK
	}
	if dsn := getenv("DATABASE_URL"); len(dsnPasswords(dsn)) > 0 {
		// Logs and messages alike: nothing printed carries the password.
		io_.out, io_.err = redactingWriter{io_.out, dsn}, redactingWriter{io_.err, dsn}
	}
	cfg, err := loadConfig(getenv)
	if err != nil && slices.ContainsFunc(args, isHelp) {
		// Help needs no configuration: every command parses its flags first.
		cfg, err = Config{getenv: getenv}, nil
	}
	if err == nil {
		err = dispatch(ctx, cfg, args, io_)
	}
	if err == nil {
		return exitOK
	}
	if h := (*helpRequested)(nil); errors.As(err, &h) {
		printHelp(io_.out, h.fs)
		return exitOK
	}
	// Every message passes the one redaction: no form of the database
	// password is printed, whichever error path carried it.
	msg := oneLine(redactSecret(err.Error(), getenv("DATABASE_URL")))
	if strings.Contains(msg, "(ref ") && (args[0] == "research" || args[0] == "ask") && strings.HasPrefix(cfg.DatabaseURL, "sqlite:") {
		// The reference is a line of the command's log: say where it is.
		msg += "; the reference is in " + filepath.Join(filepath.Dir(sqlitePath(cfg.DatabaseURL)), "cli.log")
	}
	fmt.Fprintln(io_.err, "forgebot: "+msg)
	if ce := (*cliError)(nil); errors.As(err, &ce) {
		return ce.code
	}
	return exitFailure
}

func dispatch(ctx context.Context, cfg Config, args []string, io_ stdio) error {
	cmd, rest := args[0], args[1:]
	stdout := io_.out
	switch cmd {
	case "demo":
		return cmdDemo(ctx, cfg, rest, io_)
	case "research":
		return cmdResearch(ctx, cfg, rest, io_)
	case "ask":
		return cmdAsk(ctx, cfg, rest, io_)
	case "serve":
		return cmdServe(ctx, cfg, rest, io_)
	}
	// The other commands stop at the first interrupt.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-io_.interrupts:
			cancel()
		case <-ctx.Done():
		}
	}()
	sub := ""
	if len(rest) > 0 {
		sub = rest[0]
	}
	switch {
	case cmd == "migrate":
		return cmdMigrate(ctx, cfg, rest, stdout)
	case cmd == "wallet" && sub == "topup":
		return cmdTopup(ctx, cfg, rest[1:], stdout)
	case cmd == "wallet" && sub == "show":
		return cmdShow(ctx, cfg, rest[1:], stdout)
	case cmd == "wallet" && sub == "ledger":
		return cmdLedger(ctx, cfg, rest[1:], stdout)
	case cmd == "ledger" && sub == "check":
		return cmdCheck(ctx, cfg, rest[1:], stdout)
	case cmd == "ledger" && sub == "sweep":
		return cmdSweep(ctx, cfg, rest[1:], stdout)
	case cmd == "wallet" || cmd == "ledger":
		return badInput("unknown %s command %q: see `forgebot help`", cmd, sub)
	}
	return badInput("unknown command %q: see `forgebot help`", cmd)
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// helpFor answers -h or --help given to a command group (forgebot wallet
// --help): the group's usage. Each command's own --help goes through its
// flags (helpRequested), with their defaults.
func helpFor(args []string) *flag.FlagSet {
	if len(args) >= 2 && (args[0] == "wallet" || args[0] == "ledger") && (isHelp(args[1]) || args[1] == "help") {
		return flags(args[0])
	}
	return nil
}

// oneLine folds a multi-line error (pgconn lists every address it tried) into
// the one line a user reads.
func oneLine(s string) string {
	var b strings.Builder
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if i > 0 && b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(line)
	}
	return b.String()
}
