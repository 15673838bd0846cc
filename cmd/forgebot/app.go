package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/console"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/market"
	"github.com/tokensforge/forgebot/scheduler"
)

// runStore is a store that can also execute runs.
type runStore interface {
	appStore
	research.Store
	scheduler.Store
	bots.MessageStore
	research.RouteQueue
	SetFirer(f scheduler.Firer)
	StartWorkers(ctx context.Context, exec research.Executor) error
	StopWorkers(ctx context.Context) error
}

// app is forgebot wired: store, engine, conversation and outbox.
type app struct {
	stopOutbox context.CancelFunc
	cfg        Config
	store      runStore
	engine     *research.Engine
	conv       *bots.Conversation
	outbox     *bots.Outbox
	health     *llm.Health
	schedules  *scheduler.Service // claimed by start's loop
	// adapterStops stop the chat adapters once the final messages are out.
	adapterStops []func(context.Context)
	// adapterStates say how each chat adapter is, for /healthz.
	adapterStates map[string]func() string
	log           *slog.Logger
}

// knownPrices are list prices per 1M tokens for the quick-start shortcuts;
// OPENAI_PRICE / ROUTED_PRICE ("in/out" in dollars) override them.
var knownPrices = map[string][2]string{
	"gpt-4o-mini":  {"0.15", "0.60"},
	"gpt-4o":       {"2.50", "10.00"},
	"gpt-4.1-mini": {"0.40", "1.60"},
	"gpt-4.1":      {"2.00", "8.00"},
}

// catalog loads FORGE_CATALOG (or the embedded default) and adds the
// OPENAI_* and ROUTED_* shortcut routes.
func (c Config) catalog() (*research.Catalog, error) {
	data := research.DefaultCatalog
	if c.CatalogPath != "" {
		b, err := os.ReadFile(c.CatalogPath)
		if err != nil {
			return nil, badInput("FORGE_CATALOG: %v", err)
		}
		data = b
	}
	cat, err := research.ParseCatalog(data, c.getenv)
	if err != nil {
		return nil, badInput("%v", err)
	}
	for _, sc := range []struct {
		prefix, id string
		kind       billing.RouteKind
	}{{"OPENAI", "openai", billing.RouteOfficial}, {"ROUTED", "routed", billing.RouteRouted}} {
		base, key := c.getenv(sc.prefix+"_BASE_URL"), c.getenv(sc.prefix+"_API_KEY")
		if base == "" && key == "" {
			continue
		}
		if base == "" || key == "" {
			return nil, badInput("%s_BASE_URL and %s_API_KEY go together", sc.prefix, sc.prefix)
		}
		model := c.getenv(sc.prefix + "_MODEL")
		if model == "" {
			model = c.getenv("OPENAI_MODEL")
		}
		if model == "" {
			model = "gpt-4o-mini"
		}
		price, ok := knownPrices[model]
		if p := c.getenv(sc.prefix + "_PRICE"); p != "" {
			in, out, found := strings.Cut(p, "/")
			price, ok = [2]string{in, out}, found
		}
		if !ok {
			return nil, badInput("%s_PRICE is needed for model %q, like 0.15/0.60 (dollars per 1M input/output tokens)", sc.prefix, model)
		}
		in, err1 := billing.ParseMoney(price[0])
		out, err2 := billing.ParseMoney(price[1])
		if err1 != nil || err2 != nil {
			return nil, badInput("%s_PRICE: want in/out dollars per 1M tokens, like 0.15/0.60", sc.prefix)
		}
		if err := cat.Add(llm.Route{ID: sc.id, Kind: sc.kind, Model: model, BaseURL: base, APIKey: key, KeyEnv: sc.prefix + "_API_KEY",
			Price: billing.Price{InputPerM: in, OutputPerM: out}, MaxContext: 128000, Enabled: true}); err != nil {
			return nil, badInput("%v", err)
		}
		if sc.kind == billing.RouteOfficial {
			cat.DefaultModel = model
		}
	}
	return cat, nil
}

// marketProvider builds the market data source; def applies when
// FORGE_MARKET is unset. It is cached: concurrent requests for a symbol
// share one fetch, results are kept a minute and failures 30 s, so no user
// can make the provider see more than one request per symbol in that time.
func (c Config) marketProvider(def string) market.Provider {
	return market.NewCache(c.rawMarketProvider(def), market.CacheOptions{})
}

func (c Config) rawMarketProvider(def string) market.Provider {
	m := c.Market
	if m == "" {
		m = def
	}
	switch {
	case m == "demo":
		return market.NewDemo(time.Now)
	case strings.HasPrefix(m, "csv:"):
		return market.NewCSV(strings.TrimPrefix(m, "csv:"))
	}
	opts := []market.YahooOption{}
	if c.YahooURL != "" {
		opts = append(opts, market.WithBaseURL(c.YahooURL))
	}
	return market.NewYahoo(opts...)
}

// newApp wires forgebot on the configured store. marketDefault is the market
// data used when FORGE_MARKET is unset; migrate applies migrations first
// (the demo sets itself up), otherwise a schema that is behind is refused.
func newApp(ctx context.Context, cfg Config, marketDefault string, migrate bool, log *slog.Logger) (*app, error) {
	cat, err := cfg.catalog()
	if err != nil {
		return nil, err
	}
	s, err := openStore(ctx, cfg, migrate)
	if err != nil {
		return nil, err
	}
	if migrate {
		if _, err := s.Migrate(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("migrate: %w", err)
		}
	}
	rs, ok := s.(runStore)
	if !ok {
		s.Close()
		return nil, fmt.Errorf("store %T cannot run research", s)
	}
	health := llm.NewHealth(llm.HealthOptions{})
	a := &app{cfg: cfg, store: rs, health: health, log: log, outbox: bots.NewOutbox(log)}
	a.outbox.Store = rs              // finals survive crashes and outages; views ordered across instances
	a.outbox.Rates = a.sharedRates() // platforms registered with Limits.Shared
	// Calls on routes with limits wait in one line for every instance
	// (PostgreSQL), or this process's (SQLite).
	gate := &research.Gate{Queue: rs, Log: log}
	a.engine = &research.Engine{
		Store: rs, Ledger: rs, Catalog: cat, Market: cfg.marketProvider(marketDefault), Health: health, Gate: gate,
		LLM:      &llm.Client{Health: health, Gate: gate, Log: log},
		Offline:  &research.OfflineAnalyst{Pace: 4 * time.Millisecond},
		QuoteTTL: cfg.QuoteTTL, PauseTTL: cfg.PauseTTL, AskTimeout: cfg.AskTimeout, Admins: cfg.Admins, Log: log, Benchmarks: cfg.Benchmarks,
		ReceiptURL: func(id string) string { return cfg.PublicURL + "/r/" + id },
	}
	a.conv = &bots.Conversation{Engine: a.engine, Ledger: rs, Runs: rs, Outbox: a.outbox, Log: log,
		TopUpHint: "Top up with: forgebot wallet topup --user YOU --bucket credit|routed --amount 5.00 --key KEY"}
	a.conv.Limits = bots.UserLimits{QuotesPerMinute: cfg.QuotesPerMinute, MaxRunning: cfg.MaxRunning}
	a.engine.Sink = a.conv
	a.engine.SpendDefaults = cfg.Pay.Limits.Defaults
	a.conv.Pay = cfg.Pay.pay(rs)
	// A run whose process died is resumed by a process that can deliver
	// it; one bound to a dead terminal (`forgebot research`, the demo's
	// console) is settled by any process, charging nothing, if none can.
	a.engine.Deliverable = func(d research.Destination) bool { return a.outbox.Serves(d.Platform) }
	a.engine.Bound = func(d research.Destination) bool { return d.Platform == cliPlatform || d.Platform == console.Platform }
	a.schedules = &scheduler.Service{Store: rs, Engine: a.engine, Notify: a.conv.Notify, NotifyOwner: a.conv.NotifyOwner, Log: log, MaxProposals: cfg.MaxProposals,
		MinInterval: cfg.ScheduleMinInterval, CatchUp: cfg.ScheduleCatchUp, MaxPerAccount: cfg.ScheduleMaxPerAccount}
	// A process fires only the schedules whose chats it can post to.
	a.schedules.Reports = a.outbox.Serves
	a.conv.Schedules = a.schedules
	rs.SetFirer(a.schedules)
	return a, nil
}

// sharedRates is the chat budget store every instance shares: the
// PostgreSQL store (instances of one bot may run side by side on it); nil on
// SQLite, whose one process keeps its budgets in memory.
func (a *app) sharedRates() bots.RateStore {
	if strings.HasPrefix(a.cfg.DatabaseURL, "sqlite:") {
		return nil
	}
	if r, ok := a.store.(bots.RateStore); ok {
		return r
	}
	return nil
}

// setState registers an adapter's health for /healthz.
func (a *app) setState(name string, state func() string) {
	if a.adapterStates == nil {
		a.adapterStates = map[string]func() string{}
	}
	a.adapterStates[name] = state
}

// states is every adapter's health now.
func (a *app) states() map[string]string {
	out := make(map[string]string, len(a.adapterStates))
	for name, f := range a.adapterStates {
		out[name] = f()
	}
	return out
}

// start runs the workers, the outbox and the sweepers until ctx ends.
func (a *app) start(ctx context.Context) error {
	// The outbox and the workers outlive ctx: stop drains them in order.
	octx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopOutbox = cancel
	go a.outbox.Run(octx)
	go (&billing.Sweeper{Ledger: a.store, Log: a.log}).Run(ctx)
	go a.schedules.Run(ctx)
	go a.engine.RunReaper(ctx, time.Minute, time.Hour)
	go a.engine.Watch(ctx, 0) // takes over runs whose process died
	go a.prune(ctx, 10*time.Minute)
	return a.store.StartWorkers(context.WithoutCancel(ctx), a.engine)
}

// prune deletes, every interval, quotes expired for an hour that never
// became runs, schedule proposals left unconfirmed past their time, and
// outbox rows delivered a day ago, and chat budgets idle for an hour, so no table grows with every quote asked
// for or every message sent. Failures are logged
// once per interval, not retried in a loop.
func (a *app) prune(ctx context.Context, every time.Duration) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := a.store.PruneQuotes(ctx, time.Now().Add(-time.Hour)); err != nil && ctx.Err() == nil {
			a.log.Warn("prune quotes", "err", err)
		} else if n > 0 {
			a.log.Info("pruned expired quotes", "count", n)
		}
		// Delivered finals are kept a day, for an operator looking into one.
		if n, err := a.store.PruneMessages(ctx, time.Now().Add(-24*time.Hour)); err != nil && ctx.Err() == nil {
			a.log.Warn("prune delivered messages", "err", err)
		} else if n > 0 {
			a.log.Info("pruned delivered messages", "count", n)
		}
		// Chat budgets idle for an hour are full again: as good as no row.
		if r := a.sharedRates(); r != nil {
			if n, err := r.PruneRates(ctx, time.Now().Add(-time.Hour)); err != nil && ctx.Err() == nil {
				a.log.Warn("prune chat budgets", "err", err)
			} else if n > 0 {
				a.log.Info("pruned idle chat budgets", "count", n)
			}
		}
		if n, err := a.schedules.Prune(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("prune schedule proposals", "err", err)
		} else if n > 0 {
			a.log.Info("pruned unconfirmed schedule proposals", "count", n)
		}
		t.Reset(every)
	}
}

// stop drains: no new runs, running runs get grace to finish, then are
// interrupted (and resumed by the next instance), and finals are flushed.
func (a *app) stop(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := a.store.StopWorkers(ctx); err != nil {
		a.log.Warn("stop workers", "err", err)
	}
	flush, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	_ = a.outbox.Flush(flush)
	for _, stop := range a.adapterStops {
		stop(flush) // waits for attachments still being sent
	}
	if a.stopOutbox != nil {
		a.stopOutbox()
	}
	a.store.Close()
}
