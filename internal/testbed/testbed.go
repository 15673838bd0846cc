// Package testbed wires a real store (a fresh SQLite file or a fresh
// PostgreSQL schema), River workers and the research engine for tests of the
// engine, the conversation layer and the commands. It is imported by tests only.
package testbed

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
	"github.com/tokensforge/forgebot/research/market"
	"github.com/tokensforge/forgebot/scheduler"
	"github.com/tokensforge/forgebot/store/postgres"
	"github.com/tokensforge/forgebot/store/postgres/pgtest"
	"github.com/tokensforge/forgebot/store/sqlite"
)

// Store is everything the engine and the commands need of a store.
type Store interface {
	billing.Store
	research.Store
	scheduler.Store
	research.RouteQueue
	SetFirer(f scheduler.Firer)
	Migrate(ctx context.Context) ([]string, error)
	CheckSchema(ctx context.Context) error
	StartWorkers(ctx context.Context, exec research.Executor) error
	StopWorkers(ctx context.Context) error
}

// Options shape a bed. The zero value is SQLite, the offline analyst at full
// speed, demo market data and workers running.
type Options struct {
	Postgres bool
	Pace     time.Duration // offline analyst's time per token
	// RoutesFor adds catalog routes; it gets the base URL of the bed's fake LLM API.
	RoutesFor func(baseURL string) []llm.Route
	NoWorkers bool // do not start River workers
	Admins    []billing.Identity
	// MaxWorkers bounds concurrent runs per instance (default 100).
	MaxWorkers int
	// MaxConns, on PostgreSQL, is the pool's size (default a quarter of
	// MaxWorkers, between 8 and 80).
	MaxConns int
	// ProgressEvery is the engine's streaming progress interval (default 250 ms).
	ProgressEvery time.Duration
	// RescueAfter is how long River lets a job stay running before it
	// retries it as crashed (default: the production value).
	RescueAfter time.Duration
	// LeaseTTL is how long a run's lease lasts unrenewed (default the
	// engine's); with workers, each instance watches for lapsed leases.
	LeaseTTL time.Duration
	// Sink also receives every instance's events (besides Events).
	Sink research.Sink
	// Deliverable and Bound are the engines' (see research.Engine).
	Deliverable, Bound func(research.Destination) bool
	// Tracer, on a PostgreSQL bed, sees every statement of every instance
	// (Statements counts them).
	Tracer pgx.QueryTracer
	// LocalQueue gives each instance a River queue of its own, as the demo
	// and `forgebot research` have (the default is serve's shared queue).
	LocalQueue bool
	// LLMURL and LLMClient, when set, replace the bed's in-process fake LLM
	// API for the routes RoutesFor makes (an LLMChild's).
	LLMURL    string
	LLMClient *http.Client
	// SlimEvents makes Events a slim recorder (Recorder.Slim).
	SlimEvents bool
}

// Bed is one wired engine on one fresh database.
type Bed struct {
	Store  Store
	Engine *research.Engine
	Events *Recorder
	LLM    *llmtest.Server
	Market market.Provider
	Clock  *Clock

	t        testing.TB
	opts     Options
	pgConfig *pgxpool.Config
	sqlPath  string
}

// Clock is the bed's settable clock (it starts at the real time so River's
// own timing is unaffected; tests move the engine's view forward).
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now is the real time plus the offset.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// New builds a bed; everything is closed when the test ends.
func New(t testing.TB, opts Options) *Bed {
	t.Helper()
	b := &Bed{t: t, opts: opts, Clock: &Clock{}, Events: NewRecorder(), LLM: llmtest.NewServer(t)}
	b.Events.Slim = opts.SlimEvents
	b.Market = demoMarket()
	if opts.Postgres {
		_, b.pgConfig = pgtest.Schema(t)
	} else {
		b.sqlPath = filepath.Join(t.TempDir(), "forgebot.db")
		if err := seedSQLite(b.sqlPath); err != nil {
			t.Fatalf("seed the SQLite database: %v", err)
		}
	}
	b.Store, b.Engine = b.instance(!opts.NoWorkers)
	return b
}

// InstanceWithWorkers opens another store on the same database with its own
// River client, engine and running workers, as a second process would.
func (b *Bed) InstanceWithWorkers() (Store, *research.Engine) { return b.instance(true) }

// InstanceWithSink is InstanceWithWorkers whose engine also publishes to
// sink (besides Events), as a second process with its own outbox would.
func (b *Bed) InstanceWithSink(sink research.Sink) (Store, *research.Engine) {
	return b.instanceTo(true, sink)
}

func (b *Bed) instance(workers bool) (Store, *research.Engine) {
	return b.instanceTo(workers, b.opts.Sink)
}

func (b *Bed) instanceTo(workers bool, extra research.Sink) (Store, *research.Engine) {
	t := b.t
	t.Helper()
	var sink research.Sink = b.Events
	if extra != nil {
		// extra first: once Events has an event, extra has handled it.
		sink = research.SinkFunc(func(ev research.Event) { extra.Publish(ev); b.Events.Publish(ev) })
	}
	url, hc := b.LLM.URL(), b.LLM.Client()
	if b.opts.LLMURL != "" {
		url, hc = b.opts.LLMURL, b.opts.LLMClient
	}
	in, err := build(b.pgConfig, b.sqlPath, b.opts, b.Market, url, hc, b.Clock.Now, sink, workers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	return in.Store, in.Engine
}

// Spec names the bed's database for another process: "sqlite:PATH" or a
// PostgreSQL URL whose search_path is the bed's schema.
func (b *Bed) Spec() string {
	if b.pgConfig == nil {
		return "sqlite:" + b.sqlPath
	}
	return b.pgConfig.ConnString() + "&search_path=" + b.pgConfig.ConnConfig.RuntimeParams["search_path"]
}

// Instance is an engine with its store, opened by Attach.
type Instance struct {
	Store  Store
	Engine *research.Engine
	stop   func()
}

// Close stops the instance's workers and watcher and closes its store.
func (in *Instance) Close() { in.stop() }

// Attach opens the database spec names (Bed.Spec) with running workers (none
// with opts.NoWorkers) and a lease watcher, as another forgebot process would:
// child processes of tests (which have no *testing.T) use it. llmURL is the
// parent's fake LLM API.
func Attach(spec string, opts Options, llmURL string, sink research.Sink) (*Instance, error) {
	var (
		pg      *pgxpool.Config
		sqlPath string
	)
	if path, ok := strings.CutPrefix(spec, "sqlite:"); ok {
		sqlPath = path
	} else {
		cfg, err := pgxpool.ParseConfig(spec)
		if err != nil {
			return nil, err
		}
		pg = cfg
	}
	in, err := build(pg, sqlPath, opts, demoMarket(), llmURL, http.DefaultClient, time.Now, sink, !opts.NoWorkers)
	if err == nil && opts.NoWorkers {
		// Still a live process: it renews the leases of the runs it queued.
		watch, stop := context.WithCancel(context.Background())
		go in.Engine.Watch(watch, 0)
		closeIn := in.stop
		in.stop = func() { stop(); closeIn() }
	}
	return in, err
}

func build(pg *pgxpool.Config, sqlPath string, opts Options, mkt market.Provider, llmURL string, hc *http.Client, now func() time.Time, sink research.Sink, workers bool) (*Instance, error) {
	ctx := context.Background()
	var (
		s   Store
		err error
	)
	if pg != nil {
		cfg := pg.Copy()
		// PostgreSQL allows 100 connections and tests run in parallel: small
		// pools, except for benchmarks that ask for many workers.
		cfg.MaxConns = int32(min(80, max(8, opts.MaxWorkers/4)))
		if opts.MaxConns > 0 {
			cfg.MaxConns = int32(opts.MaxConns)
		}
		if opts.Tracer != nil {
			cfg.ConnConfig.Tracer = opts.Tracer
		}
		s, err = postgres.OpenConfig(ctx, cfg, postgres.Options{Now: now, MaxWorkers: opts.MaxWorkers, RescueAfter: opts.RescueAfter, LocalQueue: opts.LocalQueue})
	} else {
		s, err = sqlite.Open(ctx, sqlPath, sqlite.Options{Now: now, MaxWorkers: opts.MaxWorkers, RescueAfter: opts.RescueAfter, LocalQueue: opts.LocalQueue})
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if _, err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	cat, err := research.ParseCatalog(research.DefaultCatalog, func(string) string { return "" })
	if err != nil {
		s.Close()
		return nil, err
	}
	if opts.RoutesFor != nil {
		for _, r := range opts.RoutesFor(llmURL) {
			if err := cat.Add(r); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	health := llm.NewHealth(llm.HealthOptions{})
	gate := &research.Gate{Queue: s, Now: now}
	e := &research.Engine{
		Store: s, Ledger: s, Catalog: cat, Market: mkt, Health: health, Sink: sink, Gate: gate,
		// A test holds a stream on its gate for as long as it needs, however
		// loaded the machine: the idle timeout (tested in research/llm) must
		// not end it first and let a retry change what the test sees.
		LLM: &llm.Client{HTTPClient: hc, Health: health, Gate: gate, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, IdleTimeout: 5 * time.Minute,
			Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }},
		Offline:       &research.OfflineAnalyst{Pace: opts.Pace},
		Now:           now,
		ReceiptURL:    func(id string) string { return "http://forgebot.test/r/" + id },
		Admins:        opts.Admins,
		ProgressEvery: opts.ProgressEvery,
		Log:           slog.New(slog.DiscardHandler),
		LeaseTTL:      opts.LeaseTTL,
		Deliverable:   opts.Deliverable,
		Bound:         opts.Bound,
	}
	watch, stopWatch := context.WithCancel(ctx)
	if workers {
		if err := s.StartWorkers(ctx, e); err != nil {
			stopWatch()
			s.Close()
			return nil, fmt.Errorf("start workers: %w", err)
		}
		go e.Watch(watch, 0)
	}
	return &Instance{Store: s, Engine: e, stop: func() {
		stopWatch()
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.StopWorkers(stop)
		s.Close()
	}}, nil
}

// demoMarket is the beds' market data: the demo series as of a fixed day.
func demoMarket() market.Provider {
	return market.NewDemo(func() time.Time { return time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC) })
}

// Fund tops a user's bucket up.
func (b *Bed) Fund(who billing.Identity, bucket billing.Bucket, amount billing.Money) billing.AccountID {
	b.t.Helper()
	e, err := b.Store.Post(context.Background(), billing.PostRequest{Identity: who, Bucket: bucket, Kind: billing.KindTopup,
		Amount: amount, Key: "fund:" + who.String() + ":" + string(bucket) + ":" + amount.String(), Actor: "test"})
	if err != nil {
		b.t.Fatalf("fund: %v", err)
	}
	return e.AccountID
}

// CheckLedger fails the test on any broken ledger invariant, and on any open hold.
func (b *Bed) CheckLedger() {
	b.t.Helper()
	a, err := b.Store.Audit(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	for _, v := range billing.Check(a) {
		b.t.Errorf("ledger check: %s", v)
	}
}

// CheckSettled is CheckLedger plus: every hold is resolved (no run left one behind).
func (b *Bed) CheckSettled() {
	b.t.Helper()
	b.CheckLedger()
	if n := b.OpenHolds(); n != 0 {
		b.t.Errorf("%d hold(s) left open", n)
	}
}

// OpenHolds counts holds still open.
func (b *Bed) OpenHolds() int {
	b.t.Helper()
	a, err := b.Store.Audit(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	n := 0
	for _, h := range a.Holds {
		if h.Status == billing.HoldOpen {
			n++
		}
	}
	return n
}

// CrashJob makes a PostgreSQL bed's River job look like one whose worker
// died mid-run an hour ago: still "running", attempted by an instance that
// is gone. River's rescuer on a live instance then retries it.
func (b *Bed) CrashJob(jobID int64) {
	b.t.Helper()
	if b.pgConfig == nil {
		b.t.Fatal("CrashJob needs a PostgreSQL bed")
	}
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, b.pgConfig.Copy())
	if err != nil {
		b.t.Fatal(err)
	}
	defer pool.Close()
	tag, err := pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now() - interval '1 hour',
		attempted_by = ARRAY['crashed-instance'] WHERE id = $1`, jobID)
	if err != nil || tag.RowsAffected() != 1 {
		b.t.Fatalf("crash job %d: %v (%d rows)", jobID, err, tag.RowsAffected())
	}
}
