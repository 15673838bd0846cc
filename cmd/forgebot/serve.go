package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tokensforge/forgebot/bots/web"
)

// cmdServe runs the HTTP server, the run workers, the sweepers and every
// configured chat adapter until SIGINT or SIGTERM, then drains.
func cmdServe(ctx context.Context, cfg Config, args []string, io_ stdio) error {
	fs := flags("serve")
	grace := fs.Duration("grace", 30*time.Second, "how long running runs may finish on shutdown")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io_.err, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := newApp(ctx, cfg, "yahoo", false, log)
	if err != nil {
		return err
	}
	metrics := web.NewMetrics(a.health)
	a.engine.Sink = metrics.Observe(a.conv)
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		a.stop(time.Second)
		return badInput("FORGE_HTTP_ADDR %s: %v", cfg.HTTPAddr, err)
	}
	srv := &http.Server{Handler: web.Handler(web.Deps{Receipts: a.store, Metrics: metrics, Log: log}), ReadHeaderTimeout: 10 * time.Second}
	if err := a.start(ctx); err != nil {
		return err
	}
	log.Info("chat adapters", "configured", "none (set TELEGRAM_BOT_TOKEN or DISCORD_BOT_TOKEN when those adapters land)")
	log.Info("serving", "addr", ln.Addr().String(), "public_url", cfg.PublicURL)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case sig := <-io_.interrupts:
		log.Info("shutting down", "signal", sig.String(), "grace", grace.String())
	case <-ctx.Done():
	case err := <-errc:
		a.stop(*grace)
		return fmt.Errorf("http server: %w", err)
	}
	// Order: stop taking HTTP work, drain runs (they finish or are
	// interrupted and resumed by the next instance), flush final messages.
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", err)
	}
	a.stop(*grace)
	return nil
}
