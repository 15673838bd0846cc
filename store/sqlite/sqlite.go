// Package sqlite is forgebot's embedded store: one SQLite file through
// modernc.org/sqlite (pure Go), in WAL mode with a busy timeout. It implements
// billing.Store with the SQL it shares with store/postgres (store/internal/sqlcore).
//
// The database/sql pool holds a single connection: SQLite has one writer
// anyway, and River's SQLite driver deadlocks with more (see PLATFORMS.md).
// Write transactions begin IMMEDIATE so that other processes on the same file
// queue on the busy timeout instead of failing half-way.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/riverqueue/river/riverdriver/riversqlite"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/migrations"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/scheduler"
	"github.com/tokensforge/forgebot/store/internal/riverqueue"
	"github.com/tokensforge/forgebot/store/internal/sqlcore"
)

// Store is a billing.Store in one SQLite file.
type Store struct {
	*sqlcore.Core
	// Route lines live in memory: this process is every caller of its
	// routes (research.RouteQueue).
	*research.MemoryRouteQueue
	DB    *sql.DB
	queue *riverqueue.Queue[*sql.Tx]
}

var (
	_ billing.Store       = (*Store)(nil)
	_ research.Store      = (*Store)(nil)
	_ scheduler.Store     = (*Store)(nil)
	_ research.RouteQueue = (*Store)(nil)
)

// Options tune a Store. The zero value is ready for production.
type Options struct {
	Now            func() time.Time          // default time.Now
	AfterStatement func(ctx context.Context) // tests: runs after each statement of a money operation
	Logger         *slog.Logger
	MaxWorkers     int // runs this instance executes at once; default 100
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

// Open opens (creating if needed) the database file at path; its folder is
// created too.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create database folder: %w", err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	// No LISTEN on SQLite: River polls, so poll often enough that a run
	// starts (and a cancel lands) quickly.
	queue, err := riverqueue.New(riversqlite.New(db), riverqueue.Config{FetchPollInterval: 100 * time.Millisecond, Queue: riverqueue.QueueFor(opts.LocalQueue), Logger: opts.Logger, MaxWorkers: opts.MaxWorkers, FireWorkers: opts.FireWorkers, RescueStuckJobsAfter: opts.RescueAfter})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{
		MemoryRouteQueue: &research.MemoryRouteQueue{},
		DB:               db,
		queue:            queue,
		Core: &sqlcore.Core{
			DB:             sqldb{querier{db}, db},
			Dialect:        Dialect,
			Now:            now,
			AfterStatement: opts.AfterStatement,
			Queue:          queue,
		},
	}, nil
}

// Dialect is SQLite's spelling of what differs from PostgreSQL.
var Dialect = sqlcore.Dialect{
	Name:     "sqlite",
	Time:     func(t time.Time) any { return t.UnixMicro() },
	HasTable: `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1`,
}

// Migrations returns the embedded SQLite migrations.
func Migrations() ([]sqlcore.Migration, error) {
	return sqlcore.LoadMigrations(migrations.SQLite, "sqlite")
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
	if err := riverqueue.Migrate(ctx, riversqlite.New(s.DB), ""); err != nil {
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
	if err := riverqueue.Validate(ctx, riversqlite.New(s.DB), ""); err != nil {
		return fmt.Errorf("%w (%v)", billing.ErrSchemaBehind, err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.DB.Close() }

// Ping checks that the database answers (for /healthz).
func (s *Store) Ping(ctx context.Context) error { return s.DB.PingContext(ctx) }

// conn is what *sql.DB and *sql.Tx share.
type conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// querier adapts database/sql to sqlcore's interfaces; it is the one place
// where sql.ErrNoRows becomes sqlcore.ErrNoRows.
type querier struct{ c conn }

func (q querier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.c.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q querier) QueryRow(ctx context.Context, query string, args ...any) sqlcore.Row {
	return row{q.c.QueryRowContext(ctx, query, args...)}
}

func (q querier) Query(ctx context.Context, query string, args ...any) (sqlcore.Rows, error) {
	r, err := q.c.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

type row struct{ *sql.Row }

func (r row) Scan(dest ...any) error {
	err := r.Row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return sqlcore.ErrNoRows
	}
	return err
}

type rows struct{ *sql.Rows }

func (r rows) Close() { r.Rows.Close() }

type sqldb struct {
	querier
	db *sql.DB
}

func (d sqldb) Begin(ctx context.Context) (sqlcore.Tx, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return sqltx{querier{tx}, tx}, nil
}

type sqltx struct {
	querier
	tx *sql.Tx
}

// Native returns the *sql.Tx.
func (t sqltx) Native() any { return t.tx }

// Commit commits. database/sql rolls a transaction back by itself when its
// context is cancelled; Commit then reports ErrTxDone, which is the cancel.
func (t sqltx) Commit(ctx context.Context) error {
	err := t.tx.Commit()
	if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
		return fmt.Errorf("transaction rolled back: %w", context.Cause(ctx))
	}
	return err
}

func (t sqltx) Rollback(context.Context) error { return t.tx.Rollback() }
