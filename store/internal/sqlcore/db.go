// Package sqlcore is the SQL that store/postgres and store/sqlite share: the
// ledger's transactions, receipts and the migration runner, written once
// against a small driver-neutral interface. Each store supplies a DB (pgx or
// database/sql) and a Dialect for what the two databases spell differently.
package sqlcore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrNoRows is what a store's Row.Scan returns when the query found nothing;
// each store translates its driver's own no-rows error to it in one place.
var ErrNoRows = errors.New("no rows")

// Querier runs statements. Placeholders are $1, $2, ... in both dialects.
type Querier interface {
	Exec(ctx context.Context, query string, args ...any) (rowsAffected int64, err error)
	QueryRow(ctx context.Context, query string, args ...any) Row
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Row is one result row.
type Row interface{ Scan(dest ...any) error }

// Rows is a result set.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Tx is a transaction.
type Tx interface {
	Querier
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
	// Native is the driver's own transaction (pgx.Tx or *sql.Tx), for River's InsertTx.
	Native() any
}

// DB begins transactions and runs single statements.
type DB interface {
	Querier
	// Begin starts a read-write transaction; on SQLite it takes the write
	// lock at once (BEGIN IMMEDIATE) so concurrent writers queue, not fail.
	Begin(ctx context.Context) (Tx, error)
}

// Dialect is what differs between PostgreSQL and SQLite.
type Dialect struct {
	Name string
	// ForUpdate is appended to SELECTs that lock the rows they read
	// (" FOR UPDATE" on PostgreSQL; SQLite's write transaction locks everything).
	ForUpdate string
	// SkipLocked is appended to the sweeper's SELECT so concurrent sweepers
	// share the work.
	SkipLocked string
	// Time turns a time into the value the database stores.
	Time func(time.Time) any
	// MigrationLock is run first in each migration transaction ("" for none).
	MigrationLock string
	// KeyLock takes a transaction-scoped lock on the text $1, serialising
	// count-then-insert limits ("" where writers are serialised anyway).
	KeyLock string
	// HasTable returns a query that yields one row with a count > 0 when the table $1 exists.
	HasTable string

	// FastPlaceHold and FastCapture, when set, are single statements that do
	// the whole common case of PlaceHold and CaptureHold in one round trip
	// (PostgreSQL's data-modifying CTEs). They return the hold's row, or no
	// row, or fail on a unique key, whenever anything is unusual; the core
	// then runs the general transaction, which decides every such case.
	// Arguments are documented in fast.go.
	FastPlaceHold string
	FastCapture   string
	// FastSettleCapture is FastCapture inside a run's settle transaction,
	// returning two more columns: the capture entry's id and the bucket's
	// available balance after it. No row (and no change) for anything
	// unusual; the general path then decides.
	FastSettleCapture string
	// FastAdvance, when set, is AdvanceRun in one statement; it returns the
	// number of runs it advanced (0 or 1). Arguments: $1 run, $2 version,
	// $3 progress, $4 now, $5 lease owner, $6 stage (-1 for none), $7 text.
	FastAdvance string
	// IsUniqueViolation reports a unique-constraint error (needed with the fast paths).
	IsUniqueViolation func(error) bool
}

// Core is the shared implementation. Now is its clock; AfterStatement, when
// set, runs after every statement a money operation makes (tests use it to
// cancel between statements).
type Core struct {
	DB             DB
	Dialect        Dialect
	Now            func() time.Time
	AfterStatement func(ctx context.Context)
	// Queue enqueues and cancels run jobs; the store adapters set it (River).
	Queue Queue
}

// Queue is the job queue as the core uses it.
type Queue interface {
	// EnqueueTx inserts a run's job inside tx (a Tx's Native value) and returns its id.
	EnqueueTx(ctx context.Context, tx any, runID string, timeout time.Duration) (int64, error)
	// EnqueueFireTx inserts a schedule's fire job inside tx.
	EnqueueFireTx(ctx context.Context, tx any, scheduleID string, at time.Time) (int64, error)
	// Cancel cancels a job, wherever it runs.
	Cancel(ctx context.Context, jobID int64) error
	// CancelTx cancels a job inside tx (a Tx's Native value); a job that no
	// longer exists is fine.
	CancelTx(ctx context.Context, tx any, jobID int64) error
	// Local reports whether the queue is its process's own (the demo,
	// `forgebot research`): only that process works the jobs it inserts.
	Local() bool
}

// tq wraps a transaction so every statement calls the AfterStatement hook.
type tq struct {
	Tx
	hook func(ctx context.Context)
}

func (t tq) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	n, err := t.Tx.Exec(ctx, q, args...)
	t.after(ctx)
	return n, err
}

func (t tq) Native() any { return t.Tx.Native() }

func (t tq) QueryRow(ctx context.Context, q string, args ...any) Row {
	return hookRow{Row: t.Tx.QueryRow(ctx, q, args...), after: func() { t.after(ctx) }}
}

func (t tq) after(ctx context.Context) {
	if t.hook != nil {
		t.hook(ctx)
	}
}

type hookRow struct {
	Row
	after func()
}

func (r hookRow) Scan(dest ...any) error {
	err := r.Row.Scan(dest...)
	r.after()
	return err
}

// inTx runs fn in one transaction and commits it, or rolls it back on any error.
func (c *Core) inTx(ctx context.Context, fn func(tx Querier) error) error {
	return c.inNativeTx(ctx, func(tx Tx) error { return fn(tx) })
}

// inNativeTx is inTx for work that needs the driver's transaction too.
func (c *Core) inNativeTx(ctx context.Context, fn func(tx Tx) error) error {
	tx, err := c.DB.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tq{Tx: tx, hook: c.AfterStatement}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (c *Core) now() time.Time { return c.Now().UTC() }

func (c *Core) t(t time.Time) any { return c.Dialect.Time(t) }

// nullTime is a time that may be NULL: zero is stored as NULL.
func (c *Core) nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return c.Dialect.Time(t)
}

// timeCol scans a time stored either as timestamptz (PostgreSQL) or as
// integer microseconds (SQLite); NULL scans as the zero time.
type timeCol struct{ t *time.Time }

func (s timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*s.t = time.Time{}
	case time.Time:
		*s.t = v.UTC()
	case int64:
		*s.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("cannot scan %T as a time", src)
	}
	return nil
}

var _ sql.Scanner = timeCol{}

func tc(t *time.Time) timeCol { return timeCol{t} }
