package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/console"
)

// consoleUser is the demo's user; the demo grants it money once.
var consoleUser = billing.Identity{Platform: console.Platform, ExternalID: "you"}

// cmdDemo is the terminal chat on the embedded store, with the offline
// analyst and demo market data unless configured otherwise. The first Ctrl-C
// during a run cancels the run; a second one exits.
func cmdDemo(ctx context.Context, cfg Config, args []string, io_ stdio) error {
	if err := parseFlags(flags("demo"), args); err != nil {
		return err
	}
	// The terminal is the chat; logs (and the references in error messages)
	// go to a file next to the database.
	dataDir := "forgebot-data"
	if strings.HasPrefix(cfg.DatabaseURL, "sqlite:") {
		dataDir = filepath.Dir(sqlitePath(cfg.DatabaseURL))
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(dataDir, "demo.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer logFile.Close()
	cfg.localRuns = true // the demo's runs report to this terminal: no serve may take them
	a, err := newApp(ctx, cfg, "demo", true, slog.New(slog.NewTextHandler(logFile, nil)))
	if err != nil {
		return err
	}
	defer a.stop(5 * time.Second)
	for _, g := range []struct {
		bucket billing.Bucket
		amount billing.Money
	}{{billing.BucketCredit, 5 * billing.Micro}, {billing.BucketRouted, 2 * billing.Micro}} {
		e, err := a.store.Post(ctx, billing.PostRequest{Identity: consoleUser, Bucket: g.bucket, Kind: billing.KindGrant, Amount: g.amount,
			Key: "demo-grant:" + consoleUser.String() + ":" + string(g.bucket), Reference: "demo grant", Actor: "demo"})
		if err != nil {
			return fmt.Errorf("demo grant: %w", err)
		}
		if !e.Replayed {
			fmt.Fprintf(io_.out, "Granted %s of %s to %s (once).\n", g.amount, g.bucket, consoleUser)
		}
	}
	con := &console.Console{Conv: a.conv, User: consoleUser, Out: io_.out, ChartDir: filepath.Join(dataDir, "charts")}
	a.outbox.Register(console.Platform, con, console.Limits)
	if err := a.start(ctx); err != nil {
		return err
	}
	fmt.Fprintln(io_.out, "Try: /research AAPL NVDA standard   then 1 to confirm.   /balance   /usage   /models   /scan us-megacaps")

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-io_.interrupts:
				if id := con.ActiveRun(); id != "" {
					fmt.Fprintln(io_.out, "\n* Cancelling the run (Ctrl-C again to quit)…")
					if _, err := a.engine.Cancel(context.WithoutCancel(ctx), id, consoleUser); err != nil {
						fmt.Fprintln(io_.out, "* "+err.Error())
					}
					continue
				}
				cancel()
				return
			}
		}
	}()
	return con.Run(runCtx, io_.in)
}

// stdio is a command's standard streams and its interrupt signals.
type stdio struct {
	in         io.Reader
	out, err   io.Writer
	interrupts <-chan os.Signal
	// outTerminal, errTerminal: out or err is a terminal, where progress
	// may redraw a line in place.
	outTerminal, errTerminal bool
}
