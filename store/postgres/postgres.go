// Package postgres is forgebot's PostgreSQL store, on pgx v5 (pgxpool). It
// implements billing.Store; the SQL it shares with store/sqlite lives in
// store/internal/sqlcore.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/migrations"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/scheduler"
	"github.com/tokensforge/forgebot/store/internal/riverqueue"
	"github.com/tokensforge/forgebot/store/internal/sqlcore"
)

// Store is a billing.Store on PostgreSQL.
type Store struct {
	*sqlcore.Core
	Pool   *pgxpool.Pool
	queue  *riverqueue.Queue[pgx.Tx]
	schema string
}

var (
	_ billing.Store   = (*Store)(nil)
	_ research.Store  = (*Store)(nil)
	_ scheduler.Store = (*Store)(nil)
)

// Options tune a Store. The zero value is ready for production.
type Options struct {
	Now            func() time.Time          // default time.Now
	AfterStatement func(ctx context.Context) // tests: runs after each statement of a money operation
	// GeneralPathOnly turns the single-statement hold, capture, settle and run advance off (tests).
	GeneralPathOnly bool
	Logger          *slog.Logger
	MaxWorkers      int // runs this instance executes at once; default 100
	// FireWorkers is how many schedule fires it works at once, on their own queue; default 16.
	FireWorkers int
	// RescueAfter is how long a job may stay running before River takes it
	// for dead and retries it (tests); default the longest run plus 5 min.
	RescueAfter time.Duration
	// LocalQueue gives this process's runs a River queue of their own, which
	// no other process works (the console and `forgebot research`: their
	// runs report to their terminal). Off, runs go to the queue every
	// `forgebot serve` shares.
	LocalQueue bool
}

// Open connects to the database at url (a postgres:// URL or key=value DSN)
// and checks that it answers.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse errors redact the password.
		return nil, fmt.Errorf("DATABASE_URL is not a valid PostgreSQL URL: %w", err)
	}
	return OpenConfig(ctx, cfg, opts)
}

// OpenConfig is Open with a parsed pool configuration.
func OpenConfig(ctx context.Context, cfg *pgxpool.Config, opts Options) (*Store, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach PostgreSQL at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return New(ctx, pool, opts)
}

// New wraps an open pool.
func New(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Store, error) {
	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("read current schema: %w", err)
	}
	queue, err := riverqueue.New(riverpgxv5.New(pool), riverqueue.Config{Schema: schema, Queue: riverqueue.QueueFor(opts.LocalQueue), Logger: opts.Logger, MaxWorkers: opts.MaxWorkers, FireWorkers: opts.FireWorkers, RescueStuckJobsAfter: opts.RescueAfter})
	if err != nil {
		pool.Close()
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	dialect := Dialect
	if opts.GeneralPathOnly {
		dialect.FastPlaceHold, dialect.FastCapture, dialect.FastSettleCapture, dialect.FastAdvance = "", "", "", ""
	}
	return &Store{
		Pool:   pool,
		queue:  queue,
		schema: schema,
		Core: &sqlcore.Core{
			DB:             db{querier{pool}, pool},
			Dialect:        dialect,
			Now:            now,
			AfterStatement: opts.AfterStatement,
			Queue:          queue,
		},
	}, nil
}

// Dialect is PostgreSQL's spelling of what differs from SQLite.
var Dialect = sqlcore.Dialect{
	Name:          "postgres",
	ForUpdate:     " FOR UPDATE",
	SkipLocked:    " SKIP LOCKED",
	Time:          func(t time.Time) any { return t.UTC() },
	MigrationLock: `SELECT pg_advisory_xact_lock(7146020411)`,
	KeyLock:       `SELECT pg_advisory_xact_lock(hashtext($1))`,
	HasTable:      `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1`,

	FastPlaceHold:     fastPlaceHold,
	FastCapture:       fastCapture,
	FastSettleCapture: fastSettleCapture,
	FastAdvance:       fastAdvance,
	IsUniqueViolation: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505"
	},
}

// fastPlaceHold places a hold in one statement: the funds check is the
// UPDATE's WHERE clause on the locked balance row. No row comes back when the
// funds are short, the account is unknown, has spend limits or owes debt; a used key fails on a unique
// index. Either way the core's general transaction takes over.
const fastPlaceHold = `WITH b AS (
	UPDATE balances SET held = held + $3, updated_at = $4
	WHERE account_id = $1 AND bucket = $2 AND posted - held >= $3
	AND NOT EXISTS (SELECT 1 FROM spend_limits l WHERE l.account_id = $1)
	AND NOT EXISTS (SELECT 1 FROM balances d WHERE d.account_id = $1 AND d.debt > 0)
	RETURNING account_id, bucket
), h AS (
	INSERT INTO holds (account_id, bucket, amount, captured, status, reference, idem_key, created_at, expires_at)
	SELECT account_id, bucket, $3, 0, 'open', $5, $6, $4, $7 FROM b
	RETURNING ` + holdCols + `
), e AS (
	INSERT INTO ledger_entries (account_id, bucket, kind, amount, posted_delta, held_delta, hold_id, reference, idem_key, actor, created_at)
	SELECT account_id, bucket, 'hold', -amount, 0, amount, id, reference, $10, $9, $4 FROM h
), k AS (
	INSERT INTO idempotency_keys (idem_key, fingerprint, result_id, created_at)
	SELECT $6, $8, id, $4 FROM h
)
SELECT ` + holdCols + ` FROM h`

// fastCapture captures an open, unexpired hold in one statement, releasing
// what it does not charge. No row comes back when the hold is resolved,
// expired, missing or smaller than the capture; a used key fails on a unique index.
const fastCapture = captureCTE + `
SELECT ` + holdCols + ` FROM h`

// fastSettleCapture is fastCapture returning the capture entry's id and
// the bucket's available balance after it, for the run's final card.
const fastSettleCapture = captureCTE + `
SELECT ` + holdCols + `, (SELECT id FROM c), (SELECT available FROM b) FROM h`

const captureCTE = `WITH h AS (
	UPDATE holds SET status = 'captured', captured = $2, resolved_at = $3
	WHERE id = $1 AND status = 'open' AND expires_at > $3 AND amount >= $2
	RETURNING ` + holdCols + `
), b AS (
	UPDATE balances SET posted = balances.posted - h.captured, held = balances.held - h.amount, updated_at = $3
	FROM h WHERE balances.account_id = h.account_id AND balances.bucket = h.bucket
	RETURNING balances.posted - balances.held AS available
), c AS (
	INSERT INTO ledger_entries (account_id, bucket, kind, amount, posted_delta, held_delta, hold_id, reference, idem_key, actor, created_at)
	SELECT account_id, bucket, 'capture', -captured, -captured, -captured, id, reference, $4 || '/capture', $5, $3 FROM h
	RETURNING id
), r AS (
	INSERT INTO ledger_entries (account_id, bucket, kind, amount, posted_delta, held_delta, hold_id, reference, idem_key, actor, created_at)
	SELECT account_id, bucket, 'release', amount - captured, 0, captured - amount, id, reference, $4 || '/release', $5, $3 FROM h
	WHERE amount > captured
), k AS (
	INSERT INTO idempotency_keys (idem_key, fingerprint, result_id, created_at)
	SELECT $4, $6, id, $3 FROM h
)`

// fastAdvance is AdvanceRun in one statement: the progress replaces the
// stored one only while the run is at the version the caller knows and the
// caller holds its lease; the stage's text goes in with it.
const fastAdvance = `WITH u AS (
	UPDATE runs SET progress = $3, version = version + 1, updated_at = $4
	WHERE id = $1 AND version = $2 AND lease_owner = $5 AND state IN ('queued', 'running', 'pausing', 'cancelling')
	RETURNING id
), s AS (
	INSERT INTO run_stages (run_id, idx, output)
	SELECT id, $6::integer, $7::text FROM u WHERE $6::integer >= 0
	ON CONFLICT (run_id, idx) DO UPDATE SET output = excluded.output
)
SELECT count(*) FROM u`

const holdCols = `id, account_id, bucket, amount, captured, status, reference, idem_key, created_at, expires_at, resolved_at`

// Migrations returns the embedded PostgreSQL migrations.
func Migrations() ([]sqlcore.Migration, error) {
	return sqlcore.LoadMigrations(migrations.Postgres, "postgres")
}

// Migrate applies pending migrations and returns their names.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	applied, err := s.Core.Migrate(ctx, ms)
	if err != nil {
		return applied, err
	}
	if err := riverqueue.Migrate(ctx, riverpgxv5.New(s.Pool), s.schema); err != nil {
		return applied, fmt.Errorf("river migrations: %w", err)
	}
	return applied, nil
}

// QueueName is the River queue this store's runs go to and are worked from.
func (s *Store) QueueName() string { return s.queue.Name() }

// StartWorkers works queued runs with exec until StopWorkers.
func (s *Store) StartWorkers(ctx context.Context, exec research.Executor) error {
	return s.queue.Start(ctx, exec)
}

// SetFirer sets who fires schedules; call it before StartWorkers.
func (s *Store) SetFirer(f scheduler.Firer) { s.queue.SetFirer(f) }

// StopWorkers stops taking runs and waits for running ones until ctx ends.
func (s *Store) StopWorkers(ctx context.Context) error { return s.queue.Stop(ctx) }

// CheckSchema returns billing.ErrSchemaBehind when `forgebot migrate` has not been run.
func (s *Store) CheckSchema(ctx context.Context) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	if err := s.Core.CheckSchema(ctx, ms); err != nil {
		return err
	}
	if err := riverqueue.Validate(ctx, riverpgxv5.New(s.Pool), s.schema); err != nil {
		return fmt.Errorf("%w (%v)", billing.ErrSchemaBehind, err)
	}
	return nil
}

// Ping checks that the database answers (for /healthz).
func (s *Store) Ping(ctx context.Context) error { return s.Pool.Ping(ctx) }

// Close closes the pool.
func (s *Store) Close() error {
	s.Pool.Close()
	return nil
}

// conn is what a pool and a transaction share.
type conn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// querier adapts pgx to sqlcore's interfaces; it is the one place where
// pgx.ErrNoRows becomes sqlcore.ErrNoRows.
type querier struct{ c conn }

func (q querier) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := q.c.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (q querier) QueryRow(ctx context.Context, sql string, args ...any) sqlcore.Row {
	return row{q.c.QueryRow(ctx, sql, args...)}
}

func (q querier) Query(ctx context.Context, sql string, args ...any) (sqlcore.Rows, error) {
	r, err := q.c.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

type row struct{ pgx.Row }

func (r row) Scan(dest ...any) error {
	err := r.Row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return sqlcore.ErrNoRows
	}
	return err
}

type db struct {
	querier
	pool *pgxpool.Pool
}

func (d db) Begin(ctx context.Context) (sqlcore.Tx, error) {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return txq{querier{tx}, tx}, nil
}

type txq struct {
	querier
	tx pgx.Tx
}

func (t txq) Native() any                        { return t.tx }
func (t txq) Commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t txq) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }
