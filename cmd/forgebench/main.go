// Command forgebench measures forgebot's hot paths against a plain baseline
// run side by side on the same database, and prints a Markdown table for
// docs/benchmarks.md.
//
//	forgebench ledger [-duration 10s] [-workers 16]
//
// DATABASE_URL names the PostgreSQL server (a throwaway schema is created and
// dropped); SQLite runs in a temporary file.
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/store/postgres"
	"github.com/tokensforge/forgebot/store/sqlite"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "ledger" {
		fmt.Fprintln(os.Stderr, "usage: forgebench ledger [-duration 10s] [-workers 16]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("ledger", flag.ExitOnError)
	duration := fs.Duration("duration", 10*time.Second, "how long each measurement runs")
	workers := fs.Int("workers", 16, "concurrent workers")
	_ = fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := benchLedger(ctx, os.Getenv("DATABASE_URL"), *duration, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "forgebench:", err)
		os.Exit(1)
	}
}

// ledgerStore is what the benchmark needs of a store.
type ledgerStore interface {
	billing.Store
	Migrate(ctx context.Context) ([]string, error)
}

// target is one database under test: its store and a baseline statement.
type target struct {
	name     string
	store    ledgerStore
	baseline func(ctx context.Context, row int) error // one single-row UPDATE transaction
	setup    func(ctx context.Context, rows int) error
}

func benchLedger(ctx context.Context, pgURL string, d time.Duration, workers int) error {
	if pgURL == "" {
		return fmt.Errorf("DATABASE_URL must name a PostgreSQL server")
	}
	pg, dropPG, err := pgTarget(ctx, pgURL, workers)
	if err != nil {
		return err
	}
	defer dropPG()
	lite, err := sqliteTarget(ctx)
	if err != nil {
		return err
	}
	defer lite.store.Close()

	fmt.Printf("forgebench ledger: %d workers, %s per measurement, %s, GOMAXPROCS=%d\n\n", workers, d, runtime.Version(), runtime.GOMAXPROCS(0))
	fmt.Println("| store | wallets | hold+capture pairs/s | baseline UPDATE tx/s | ratio |")
	fmt.Println("|---|---:|---:|---:|---:|")
	for _, c := range []struct {
		t       target
		wallets int
	}{{pg, 1000}, {pg, 10}, {lite, 1000}, {lite, 10}} {
		accounts, err := fund(ctx, c.t.store, c.t.name, c.wallets)
		if err != nil {
			return err
		}
		if err := c.t.setup(ctx, c.wallets); err != nil {
			return err
		}
		base, err := measure(ctx, d, workers, func(ctx context.Context, w int, rng *rand.Rand) error {
			return c.t.baseline(ctx, rng.IntN(c.wallets))
		})
		if err != nil {
			return fmt.Errorf("%s baseline: %w", c.t.name, err)
		}
		var seq atomic.Int64
		pairs, err := measure(ctx, d, workers, func(ctx context.Context, w int, rng *rand.Rand) error {
			acc := accounts[rng.IntN(len(accounts))]
			n := seq.Add(1)
			h, err := c.t.store.PlaceHold(ctx, billing.HoldRequest{AccountID: acc, Bucket: billing.BucketCredit, Amount: 10_000,
				TTL: time.Hour, Key: fmt.Sprintf("b%d-%d:hold", c.wallets, n), Reference: "bench"})
			if err != nil {
				return err
			}
			_, err = c.t.store.CaptureHold(ctx, billing.CaptureRequest{HoldID: h.ID, Amount: 4_321, Key: fmt.Sprintf("b%d-%d:capture", c.wallets, n)})
			return err
		})
		if err != nil {
			return fmt.Errorf("%s ledger: %w", c.t.name, err)
		}
		fmt.Printf("| %s | %d | %.0f | %.0f | %.2f |\n", c.t.name, c.wallets, pairs, base, pairs/base)
	}
	a, err := pg.store.Audit(ctx)
	if err != nil {
		return err
	}
	if v := billing.Check(a); len(v) > 0 {
		return fmt.Errorf("ledger check after the PostgreSQL benchmark: %v", v[0])
	}
	a, err = lite.store.Audit(ctx)
	if err != nil {
		return err
	}
	if v := billing.Check(a); len(v) > 0 {
		return fmt.Errorf("ledger check after the SQLite benchmark: %v", v[0])
	}
	fmt.Println("\nledger check: ok on both stores after the run")
	return nil
}

// fund creates n wallets holding plenty of credit.
func fund(ctx context.Context, s billing.Store, name string, n int) ([]billing.AccountID, error) {
	out := make([]billing.AccountID, n)
	for i := range n {
		e, err := s.Post(ctx, billing.PostRequest{Identity: billing.Identity{Platform: "bench", ExternalID: fmt.Sprintf("%d-%d", n, i)},
			Bucket: billing.BucketCredit, Kind: billing.KindGrant, Amount: 1_000_000 * billing.Micro, Key: fmt.Sprintf("fund-%d-%d", n, i)})
		if err != nil {
			return nil, fmt.Errorf("%s: fund: %w", name, err)
		}
		out[i] = e.AccountID
	}
	return out, nil
}

// measure runs op on workers goroutines for d and returns operations per second.
func measure(ctx context.Context, d time.Duration, workers int, op func(ctx context.Context, w int, rng *rand.Rand) error) (float64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		done atomic.Int64
		wg   sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := op(ctx, w, rng); err != nil {
					cancel(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	return float64(done.Load()) / time.Since(start).Seconds(), nil
}

func pgTarget(ctx context.Context, url string, workers int) (target, func(), error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return target{}, nil, err
	}
	var b [4]byte
	_, _ = crand.Read(b[:])
	schema := "forgebench_" + hex.EncodeToString(b[:])
	admin, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return target{}, nil, err
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return target{}, nil, err
	}
	drop := func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = int32(workers + 2)
	s, err := postgres.OpenConfig(ctx, cfg, postgres.Options{})
	if err != nil {
		drop()
		return target{}, nil, err
	}
	if _, err := s.Migrate(ctx); err != nil {
		drop()
		return target{}, nil, err
	}
	return target{
		name:  "PostgreSQL",
		store: s,
		setup: func(ctx context.Context, rows int) error {
			_, err := s.Pool.Exec(ctx, `DROP TABLE IF EXISTS bench_counter;
				CREATE TABLE bench_counter (id integer PRIMARY KEY, n bigint NOT NULL);
				INSERT INTO bench_counter SELECT g, 0 FROM generate_series(0, `+fmt.Sprint(rows-1)+`) g`)
			return err
		},
		baseline: func(ctx context.Context, row int) error {
			return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `UPDATE bench_counter SET n = n + 1 WHERE id = $1`, row)
				return err
			})
		},
	}, func() { s.Close(); drop() }, nil
}

func sqliteTarget(ctx context.Context) (target, error) {
	dir, err := os.MkdirTemp("", "forgebench")
	if err != nil {
		return target{}, err
	}
	s, err := sqlite.Open(ctx, filepath.Join(dir, "bench.db"), sqlite.Options{})
	if err != nil {
		return target{}, err
	}
	if _, err := s.Migrate(ctx); err != nil {
		return target{}, err
	}
	return target{
		name:  "SQLite",
		store: s,
		setup: func(ctx context.Context, rows int) error {
			if _, err := s.DB.ExecContext(ctx, `DROP TABLE IF EXISTS bench_counter;
				CREATE TABLE bench_counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
				return err
			}
			for i := range rows {
				if _, err := s.DB.ExecContext(ctx, `INSERT INTO bench_counter (id, n) VALUES ($1, 0)`, i); err != nil {
					return err
				}
			}
			return nil
		},
		baseline: func(ctx context.Context, row int) error {
			tx, err := s.DB.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, `UPDATE bench_counter SET n = n + 1 WHERE id = $1`, row); err != nil {
				return err
			}
			return tx.Commit()
		},
	}, nil
}
