package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
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
	for _, r := range a.engine.Catalog.Routes {
		metrics.KnowRoutes(r.ID)
	}
	a.engine.Sink = metrics.Observe(a.conv)
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		a.stop(time.Second)
		return badInput("FORGE_HTTP_ADDR %s: %v", cfg.HTTPAddr, err)
	}
	// The adapters live until the runs have drained and the final messages
	// have gone out through them.
	adapters, stopAdapters := context.WithCancel(ctx)
	defer stopAdapters()
	mux := http.NewServeMux()
	deps := web.Deps{Receipts: a.store, Metrics: metrics, MetricsToken: cfg.MetricsToken, Log: log, Adapters: a.states}
	if p, ok := a.store.(web.Pinger); ok {
		deps.DB = p
	}
	mux.Handle("/", web.Handler(deps))
	var metricsSrv *http.Server
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			a.stop(time.Second)
			return badInput("FORGE_METRICS_ADDR %s: %v", cfg.MetricsAddr, err)
		}
		mmux := http.NewServeMux()
		mmux.Handle("GET /metrics", metrics.Handler())
		metricsSrv = web.NewServer(web.LimitBodies(mmux, web.MaxBody))
		go func() {
			if err := metricsSrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		log.Info("metrics", "addr", mln.Addr().String())
	}
	var enabled []string
	if _, err := setupStripe(cfg, a, mux); err != nil { // payments, not a chat adapter
		ln.Close()
		a.stop(time.Second)
		return err
	}
	for name, setup := range map[string]func(context.Context, Config, *app, *http.ServeMux) (bool, error){
		"telegram": setupTelegram, "discord": setupDiscord,
	} {
		on, err := setup(adapters, cfg, a, mux)
		if err != nil {
			ln.Close()
			a.stop(time.Second)
			return err
		}
		if on {
			enabled = append(enabled, name)
		}
	}
	// Timeouts against slow clients, and a body limit on every POST route
	// (the chat webhooks mounted on mux included).
	srv := web.NewServer(web.LimitBodies(mux, web.MaxBody))
	if err := a.start(ctx); err != nil {
		return err
	}
	if len(enabled) == 0 {
		log.Info("chat adapters", "configured", "none (set TELEGRAM_BOT_TOKEN, or DISCORD_BOT_TOKEN and DISCORD_APP_ID); serving HTTP and runs")
	} else {
		slices.Sort(enabled)
		log.Info("chat adapters", "configured", strings.Join(enabled, ", "))
	}
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
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(shut)
	}
	a.stop(*grace) // drains runs and flushes final messages through the adapters
	stopAdapters()
	return nil
}
