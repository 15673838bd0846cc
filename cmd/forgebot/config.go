package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/market"
	"github.com/tokensforge/forgebot/store/postgres"
	"github.com/tokensforge/forgebot/store/sqlite"
)

// DefaultDatabaseURL is the embedded store used when DATABASE_URL is unset.
const DefaultDatabaseURL = "sqlite:./forgebot-data/forgebot.db"

// Config is everything forgebot reads from its environment, parsed once here.
type Config struct {
	DatabaseURL string
	Market      string // demo, yahoo or csv:DIR ("" = the command's default)
	// Benchmarks name the symbol each asset class's relative strength is measured against
	// (FORGE_BENCHMARKS="equity=SPY,crypto=BTC-USD,fx=none"); a class not named uses SPY.
	Benchmarks  map[market.AssetClass]string
	YahooURL    string
	CatalogPath string
	HTTPAddr    string
	PublicURL   string
	// MetricsAddr serves /metrics on a listener of its own (keep it
	// private); MetricsToken serves it on the main listener behind a
	// bearer token instead. Neither: /metrics is not served.
	MetricsAddr  string
	MetricsToken string
	// Per-user limits (zero: the defaults, 10 quotes a minute, 3 runs at
	// once, 5 schedule proposals waiting).
	QuotesPerMinute, MaxRunning, MaxProposals int
	Admins                                    []billing.Identity
	QuoteTTL                                  time.Duration
	PauseTTL                                  time.Duration
	// AskTimeout is how long an agent run waits for its owner's answer to
	// an ask-to-continue before it wraps up.
	AskTimeout time.Duration
	// Schedules: the shortest gap between fire times, how late a time
	// missed during downtime may still run, and schedules per account
	// (zero means the scheduler's default: 1h, 1h, 10).
	ScheduleMinInterval   time.Duration
	ScheduleCatchUp       time.Duration
	ScheduleMaxPerAccount int
	Pay                   PayConfig

	// localRuns: this process's runs go to a River queue of its own (the
	// demo and `forgebot research` set it; serve works the shared queue).
	localRuns bool

	// getenv resolves the API keys named in the catalog; kept so that keys
	// are read where routes are built and nowhere else.
	getenv func(string) string
}

func loadConfig(getenv func(string) string) (Config, error) {
	c := Config{
		DatabaseURL:  strings.TrimSpace(getenv("DATABASE_URL")),
		Market:       strings.TrimSpace(getenv("FORGE_MARKET")),
		YahooURL:     strings.TrimSpace(getenv("FORGE_YAHOO_URL")),
		CatalogPath:  strings.TrimSpace(getenv("FORGE_CATALOG")),
		HTTPAddr:     strings.TrimSpace(getenv("FORGE_HTTP_ADDR")),
		PublicURL:    strings.TrimRight(strings.TrimSpace(getenv("FORGE_PUBLIC_URL")), "/"),
		MetricsAddr:  strings.TrimSpace(getenv("FORGE_METRICS_ADDR")),
		MetricsToken: strings.TrimSpace(getenv("FORGE_METRICS_TOKEN")),
		QuoteTTL:     10 * time.Minute,
		PauseTTL:     time.Hour,
		AskTimeout:   5 * time.Minute, // research.DefaultAskTimeout
		getenv:       getenv,
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = DefaultDatabaseURL
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 16 {
		return c, badInput("FORGE_METRICS_TOKEN must be at least 16 characters (it guards /metrics)")
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.HTTPAddr
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, badInput("FORGE_PUBLIC_URL must be an http(s) URL like https://forgebot.example.com, got %q", c.PublicURL)
	}
	for _, a := range strings.Split(getenv("FORGE_ADMINS"), ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		id, err := billing.ParseIdentity(a)
		if err != nil {
			return c, badInput("FORGE_ADMINS: %v", err)
		}
		c.Admins = append(c.Admins, id)
	}
	for name, dst := range map[string]*time.Duration{"FORGE_QUOTE_TTL": &c.QuoteTTL, "FORGE_PAUSE_TTL": &c.PauseTTL, "FORGE_ASK_TIMEOUT": &c.AskTimeout,
		"FORGE_SCHEDULE_MIN_INTERVAL": &c.ScheduleMinInterval, "FORGE_SCHEDULE_CATCHUP": &c.ScheduleCatchUp} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return c, badInput("%s: want a positive duration like 10m, got %q", name, v)
			}
			*dst = d
		}
	}
	for name, dst := range map[string]*int{"FORGE_QUOTES_PER_MINUTE": &c.QuotesPerMinute, "FORGE_MAX_RUNNING": &c.MaxRunning,
		"FORGE_SCHEDULE_MAX_PROPOSALS": &c.MaxProposals} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return c, badInput("%s: want a positive whole number, got %q", name, v)
			}
			*dst = n
		}
	}
	if v := strings.TrimSpace(getenv("FORGE_SCHEDULE_MAX_PER_ACCOUNT")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return c, badInput("FORGE_SCHEDULE_MAX_PER_ACCOUNT: want a positive whole number like 10, got %q", v)
		}
		c.ScheduleMaxPerAccount = n
	}
	if v := strings.TrimSpace(getenv("FORGE_BENCHMARKS")); v != "" {
		b, err := parseBenchmarks(v)
		if err != nil {
			return c, err
		}
		c.Benchmarks = b
	}
	var err error
	if c.Pay, err = loadPayConfig(getenv); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate checks the configuration without touching the network or disk.
func (c Config) Validate() error {
	if m := c.Market; m != "" && m != "demo" && m != "yahoo" && (!strings.HasPrefix(m, "csv:") || len(m) == 4) {
		return badInput("FORGE_MARKET must be demo, yahoo or csv:DIR (got %q)", m)
	}
	u := c.DatabaseURL
	switch {
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		// pgx fills a missing host or database from its defaults (the local
		// socket, the OS user's name): a bare URL would migrate some other
		// database, so both must be named. A URL pgx cannot parse is left to
		// its own, more precise, message.
		if pu, err := url.Parse(u); err == nil {
			host := cmp.Or(pu.Hostname(), pu.Query().Get("host"))
			db := cmp.Or(strings.TrimPrefix(pu.Path, "/"), pu.Query().Get("dbname"))
			if host == "" || db == "" {
				return badInput("DATABASE_URL needs a host and a database name, like postgres://user@127.0.0.1:5432/forgebot")
			}
		}
		return nil
	case isKeyValueDSN(u):
		// host=... dbname=... (libpq's key=value form): the same rule as a
		// URL, both named.
		var host, db bool
		for _, kv := range parseKeyValueDSN(u) {
			host = host || kv.key == "host" && kv.value != ""
			db = db || kv.key == "dbname" && kv.value != ""
		}
		if !host || !db {
			return badInput("DATABASE_URL needs a host and a database name, like host=127.0.0.1 port=5432 user=forgebot dbname=forgebot")
		}
		return nil
	case strings.HasPrefix(u, "sqlite:"):
		if sqlitePath(u) == "" {
			return badInput("DATABASE_URL: sqlite: needs a file path, like sqlite:./forgebot-data/forgebot.db")
		}
		return nil
	}
	// Name what was given only when it is clearly a scheme: anything else
	// may be a secret pasted in the wrong place.
	got := ""
	if scheme, _, ok := strings.Cut(u, ":"); ok && schemeRE.MatchString(scheme) {
		got = fmt.Sprintf(" (got %q)", scheme+":...")
	}
	return badInput("DATABASE_URL must start with postgres://, postgresql:// or sqlite:, or be key=value settings like host=127.0.0.1 dbname=forgebot%s", got)
}

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]{0,15}$`)

func sqlitePath(u string) string {
	return strings.TrimPrefix(strings.TrimPrefix(u, "sqlite:"), "//")
}

// appStore is a billing store that manages its own schema.
type appStore interface {
	billing.Store
	Migrate(ctx context.Context) ([]string, error)
	CheckSchema(ctx context.Context) error
}

// openStore opens the configured store. Unless forMigrate, it refuses a
// database whose schema is behind this build (and does not create an SQLite
// file that is not there yet).
func openStore(ctx context.Context, c Config, forMigrate bool) (appStore, error) {
	var (
		s   appStore
		err error
	)
	if strings.HasPrefix(c.DatabaseURL, "sqlite:") {
		path := sqlitePath(c.DatabaseURL)
		if _, statErr := os.Stat(path); !forMigrate && errors.Is(statErr, fs.ErrNotExist) {
			return nil, badInput("no database at %s yet: run `forgebot migrate` first", path)
		}
		s, err = sqlite.Open(ctx, path, sqlite.Options{LocalQueue: c.localRuns})
	} else {
		openCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err = postgres.Open(openCtx, c.DatabaseURL, postgres.Options{LocalQueue: c.localRuns})
	}
	if err != nil {
		return nil, badInput("%s", redactSecret(err.Error(), c.DatabaseURL))
	}
	if !forMigrate {
		if err := s.CheckSchema(ctx); err != nil {
			s.Close()
			if errors.Is(err, billing.ErrSchemaBehind) {
				return nil, badInput("%v", err)
			}
			return nil, fmt.Errorf("check schema: %w", err)
		}
	}
	return s, nil
}

// parseBenchmarks reads "equity=SPY,crypto=BTC-USD,fx=none": a benchmark per asset class, "none" for none.
func parseBenchmarks(v string) (map[market.AssetClass]string, error) {
	out := map[market.AssetClass]string{}
	for _, part := range strings.Split(v, ",") {
		class, sym, ok := strings.Cut(strings.TrimSpace(part), "=")
		c := market.AssetClass(strings.ToLower(strings.TrimSpace(class)))
		if !ok || (c != market.Equity && c != market.Crypto && c != market.FX) {
			return nil, badInput("FORGE_BENCHMARKS: want CLASS=SYMBOL pairs for equity, crypto or fx, like equity=SPY,crypto=BTC-USD,fx=none; got %q", part)
		}
		if sym = strings.TrimSpace(sym); strings.EqualFold(sym, "none") {
			out[c] = ""
			continue
		}
		n, err := market.NormalizeSymbol(sym)
		if err != nil {
			return nil, badInput("FORGE_BENCHMARKS: %v", err)
		}
		out[c] = n
	}
	return out, nil
}
