package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/console"
	"github.com/tokensforge/forgebot/bots/web"
	"github.com/tokensforge/forgebot/research"
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
	ln, err := demoListener(&cfg)
	if err != nil {
		return err
	}
	defer ln.Close()
	a, err := newApp(ctx, cfg, "demo", true, slog.New(slog.NewTextHandler(logFile, nil)))
	if err != nil {
		return err
	}
	// A user who quit with Ctrl-C waits no longer than stopWithin's bound.
	var quit atomic.Bool
	defer func() {
		if quit.Load() {
			stopWithin(a, 3*time.Second)
		} else {
			a.stop(5 * time.Second)
		}
	}()
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
	con := &console.Console{Conv: a.conv, User: consoleUser, Out: io_.out, ChartDir: filepath.Join(dataDir, "charts"), Terminal: io_.outTerminal}
	a.outbox.Register(console.Platform, con, console.Limits)
	// With STRIPE_* set, /topup here answers with a Checkout link, and the
	// webhook is served beside the receipt pages: the payment is told in
	// this terminal when it lands.
	mux := http.NewServeMux()
	stripeOn, err := setupStripe(cfg, a, mux)
	if err != nil {
		return err
	}
	if err := a.start(ctx); err != nil {
		return err
	}
	stopWeb, metricsOpen := serveReceipts(a, ln, mux)
	defer stopWeb()
	switch {
	case metricsOpen:
		fmt.Fprintf(io_.out, "Receipt pages: %s/r/…   (served by this demo while it runs; health at %s/healthz, metrics at %s/metrics)\n", a.cfg.PublicURL, a.cfg.PublicURL, a.cfg.PublicURL)
	case a.cfg.MetricsToken != "":
		fmt.Fprintf(io_.out, "Receipt pages: %s/r/…   (served by this demo while it runs; health at %s/healthz, metrics at %s/metrics with FORGE_METRICS_TOKEN)\n", a.cfg.PublicURL, a.cfg.PublicURL, a.cfg.PublicURL)
	default:
		fmt.Fprintf(io_.out, "Receipt pages: %s/r/…   (served by this demo while it runs; health at %s/healthz; metrics only on a loopback address or with FORGE_METRICS_TOKEN)\n", a.cfg.PublicURL, a.cfg.PublicURL)
	}
	if stripeOn {
		fmt.Fprintf(io_.out, "Stripe Checkout: /topup answers with a payment link; Stripe's webhook goes to %s/stripe/webhook\n", a.cfg.PublicURL)
	}
	fmt.Fprintln(io_.out, "Try: /research AAPL NVDA standard   then 1 to confirm.   /balance   /usage   /models   /scan us-megacaps")

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		cancelling := "" // the run a Ctrl-C already cancels: another Ctrl-C quits
		for {
			select {
			case <-runCtx.Done():
				return
			case <-io_.interrupts:
				id := con.ActiveRun()
				if id == "" || id == cancelling {
					quit.Store(id != "")
					cancel()
					return
				}
				cancelling = id
				fmt.Fprintln(io_.out, "\n* Cancelling the run (Ctrl-C again to quit)…")
				// In the background: a second Ctrl-C must be heard while it settles.
				go func() {
					cctx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
					defer done()
					if _, err := a.engine.Cancel(cctx, id, consoleUser); err != nil && !errors.Is(err, research.ErrWrongState) {
						fmt.Fprintln(io_.out, "* cancel: "+err.Error())
					}
				}()
			}
		}
	}()
	return con.Run(runCtx, io_.in)
}

// demoListener listens where the demo serves its receipt pages: FORGE_HTTP_ADDR
// when set, else a free port on 127.0.0.1 (so a serve on the default port can
// run beside it). Unless FORGE_PUBLIC_URL is set, receipt links point at it.
func demoListener(cfg *Config) (net.Listener, error) {
	addr := "127.0.0.1:0"
	if strings.TrimSpace(cfg.getenv("FORGE_HTTP_ADDR")) != "" {
		addr = cfg.HTTPAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, badInput("demo: cannot serve receipt pages on %s: %v", addr, err)
	}
	if strings.TrimSpace(cfg.getenv("FORGE_PUBLIC_URL")) == "" {
		cfg.PublicURL = "http://" + ln.Addr().String()
	}
	return ln, nil
}

// serveReceipts serves a's receipt pages, /healthz and /metrics, and what
// mux holds (the Stripe webhook), on ln until the returned stop is called.
// /metrics is open on a loopback listener (the demo's default: only this
// machine reaches it), behind FORGE_METRICS_TOKEN when one is set, and not
// served otherwise; metricsOpen says it is open.
func serveReceipts(a *app, ln net.Listener, mux *http.ServeMux) (stop func(), metricsOpen bool) {
	metrics := web.NewMetrics(a.health)
	for _, r := range a.engine.Catalog.Routes {
		metrics.KnowRoutes(r.ID)
	}
	a.engine.Sink = metrics.Observe(a.conv)
	deps := web.Deps{Receipts: a.store, Metrics: metrics, MetricsToken: a.cfg.MetricsToken, Log: a.log}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsLoopback() && deps.MetricsToken == "" {
		metricsOpen = true
		deps.Mount = func(mux *http.ServeMux) { mux.Handle("GET /metrics", metrics.Handler()) }
	}
	mux.Handle("/", web.Handler(deps))
	srv := &http.Server{Handler: web.LimitBodies(mux, web.MaxBody), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, metricsOpen
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
