// Package riverqueue runs forgebot's research runs as River jobs, on whichever
// driver a store uses (riverpgxv5 for PostgreSQL, riversqlite for SQLite).
// A run's job is inserted in the same transaction as its hold and run row; a
// cancel through any instance reaches the instance running the job.
package riverqueue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/scheduler"
)

// SharedQueue is the River queue of the workers by design (`forgebot serve`):
// every serve instance takes its jobs, and only serve inserts into it, so a
// serve never runs a job whose messages it cannot deliver.
const SharedQueue = "runs"

// LocalQueuePrefix starts the name of a process's own queue: the console
// (`forgebot demo`) and `forgebot research` run their jobs there, where no
// serve (and no other CLI) takes them; their progress and final events go
// to the terminal of the process that started them. A job left in a local
// queue by a process that died is for crash recovery to find by this prefix.
const LocalQueuePrefix = "local_"

// LocalQueue returns a fresh queue name for one process: LocalQueuePrefix,
// the process id and a random suffix (pids are reused across machines and
// restarts).
func LocalQueue() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%d_%s", LocalQueuePrefix, os.Getpid(), hex.EncodeToString(b[:]))
}

// QueueFor returns a fresh LocalQueue when local, else SharedQueue.
func QueueFor(local bool) string {
	if local {
		return LocalQueue()
	}
	return SharedQueue
}

// IsLocal reports whether a queue is some process's own (see LocalQueue).
func IsLocal(queue string) bool { return strings.HasPrefix(queue, LocalQueuePrefix) }

// FireQueue names the queue of the schedule fires that go with a run queue.
// Fires have their own queue and workers: at a busy minute (09:30, thousands
// of schedules due) a fire must never wait for a run worker to free up, or
// the last fire, and so the last run, starts late behind every earlier run.
// A local run queue's fires stay local (the prefix is kept).
func FireQueue(runQueue string) string { return runQueue + "_fires" }

// DefaultFireWorkers is how many fires an instance works at once. A fire is
// a quote and a confirm: CPU and a few statements, no model call, so a small
// pool keeps two cores busy without crowding the runs out.
const DefaultFireWorkers = 16

// MaxAttempts is how often River tries a job: a second attempt resumes a run
// whose instance died, from its last finished stage, and retries a schedule
// fire whose quote failed (a market data outage, say); the last attempt of a
// fire records it as failed.
const MaxAttempts = 3

// RunArgs is a run job's payload.
type RunArgs struct {
	RunID          string `json:"run_id"`
	TimeoutSeconds int    `json:"timeout_seconds"`
}

// Kind implements river.JobArgs.
func (RunArgs) Kind() string { return "research_run" }

// FireArgs is a schedule fire job's payload.
type FireArgs struct {
	ScheduleID string    `json:"schedule_id"`
	At         time.Time `json:"at"`
}

// Kind implements river.JobArgs.
func (FireArgs) Kind() string { return "schedule_fire" }

type fireWorker struct {
	river.WorkerDefaults[FireArgs]
	firer atomic.Pointer[scheduler.Firer]
}

func (w *fireWorker) Work(ctx context.Context, job *river.Job[FireArgs]) error {
	f := w.firer.Load()
	if f == nil {
		return errors.New("no scheduler: workers not started")
	}
	// The attempt tells the firer when River will give up, so the last one
	// records the time as failed (with a notice) instead of leaving it
	// pending: its fire row's key keeps the claimer from trying it again.
	return (*f).Fire(ctx, job.Args.ScheduleID, job.Args.At, job.Attempt, job.MaxAttempts)
}

type runWorker struct {
	river.WorkerDefaults[RunArgs]
	exec atomic.Pointer[research.Executor]
}

// Timeout comes from the run's depth: its longest expected runtime plus a margin.
func (w *runWorker) Timeout(job *river.Job[RunArgs]) time.Duration {
	return time.Duration(job.Args.TimeoutSeconds)*time.Second + time.Minute
}

func (w *runWorker) Work(ctx context.Context, job *river.Job[RunArgs]) error {
	exec := w.exec.Load()
	if exec == nil {
		return errors.New("no executor: workers not started")
	}
	err := (*exec).Execute(ctx, job.Args.RunID, job.Attempt, job.MaxAttempts)
	if errors.Is(err, research.ErrLeaseHeld) {
		// Another live instance holds the run (River ran the job twice, or a
		// resume raced the previous holder's release): look again shortly;
		// once the run ends or the lease frees, this attempt ends at once.
		return river.JobSnooze(2 * time.Second)
	}
	return err
}

// Config tunes a Queue.
type Config struct {
	// Queue is the one River queue this client inserts into and works:
	// SharedQueue (the default) for serve, a LocalQueue for a CLI process.
	Queue      string
	Schema     string // PostgreSQL schema of River's tables ("" = search_path)
	MaxWorkers int    // concurrent runs per instance; default 100
	// FireWorkers is how many schedule fires an instance works at once, on
	// their own queue (FireQueue); default DefaultFireWorkers.
	FireWorkers       int
	FetchPollInterval time.Duration
	// RescueStuckJobsAfter must exceed the longest run; default that plus
	// 5 minutes (20 min).
	RescueStuckJobsAfter time.Duration
	Logger               *slog.Logger
}

// Queue is a River client for run jobs.
type Queue[TTx any] struct {
	client  *river.Client[TTx]
	worker  *runWorker
	fire    *fireWorker
	driver  riverdriver.Driver[TTx]
	schema  string
	queue   string
	started atomic.Bool
}

// New makes a client that can insert jobs at once and work them after Start.
func New[TTx any](driver riverdriver.Driver[TTx], cfg Config) (*Queue[TTx], error) {
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = 100
	}
	if cfg.Queue == "" {
		cfg.Queue = SharedQueue
	}
	if cfg.FireWorkers <= 0 {
		cfg.FireWorkers = DefaultFireWorkers
	}
	if cfg.RescueStuckJobsAfter <= 0 {
		cfg.RescueStuckJobsAfter = research.LongestRun() + 5*time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w, fw := &runWorker{}, &fireWorker{}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, w); err != nil {
		return nil, err
	}
	if err := river.AddWorkerSafely(workers, fw); err != nil {
		return nil, err
	}
	client, err := river.NewClient(driver, &river.Config{
		Queues: map[string]river.QueueConfig{
			cfg.Queue: {MaxWorkers: cfg.MaxWorkers},
			// Where River polls (SQLite), each poll of an idle queue costs a statement; a fire is due to the
			// minute, so its queue polls once a second while runs keep the faster interval.
			FireQueue(cfg.Queue): {MaxWorkers: cfg.FireWorkers, FetchPollInterval: max(cfg.FetchPollInterval, time.Second)},
		},
		Workers:              workers,
		MaxAttempts:          MaxAttempts,
		RescueStuckJobsAfter: cfg.RescueStuckJobsAfter,
		// Run jobs set their own timeout (Timeout above); this is the fire
		// jobs', and River wants it no longer than the rescue delay.
		JobTimeout:        min(time.Minute, cfg.RescueStuckJobsAfter),
		FetchPollInterval: cfg.FetchPollInterval,
		FetchCooldown:     min(cfg.FetchPollInterval, 100*time.Millisecond),
		Schema:            cfg.Schema,
		Logger:            cfg.Logger,
		// A run settles itself; River's retries exist for crashes, soon.
		RetryPolicy: retryPolicy{},
	})
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return &Queue[TTx]{client: client, worker: w, fire: fw, driver: driver, schema: cfg.Schema, queue: cfg.Queue}, nil
}

type retryPolicy struct{}

func (retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	return time.Now().Add(time.Duration(job.Attempt) * time.Second)
}

// EnqueueTx inserts a run's job in tx, which must be the driver's transaction type.
func (q *Queue[TTx]) EnqueueTx(ctx context.Context, tx any, runID string, timeout time.Duration) (int64, error) {
	t, ok := tx.(TTx)
	if !ok {
		return 0, fmt.Errorf("enqueue: transaction is %T", tx)
	}
	res, err := q.client.InsertTx(ctx, t, RunArgs{RunID: runID, TimeoutSeconds: int(timeout / time.Second)},
		&river.InsertOpts{Queue: q.queue, MaxAttempts: MaxAttempts})
	if err != nil {
		return 0, err
	}
	return res.Job.ID, nil
}

// EnqueueFireTx inserts a schedule's fire job in tx. River's uniqueness by
// arguments backs up the fire table's own key.
func (q *Queue[TTx]) EnqueueFireTx(ctx context.Context, tx any, scheduleID string, at time.Time) (int64, error) {
	t, ok := tx.(TTx)
	if !ok {
		return 0, fmt.Errorf("enqueue: transaction is %T", tx)
	}
	res, err := q.client.InsertTx(ctx, t, FireArgs{ScheduleID: scheduleID, At: at.UTC()},
		&river.InsertOpts{Queue: FireQueue(q.queue), MaxAttempts: MaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true}})
	if err != nil {
		return 0, err
	}
	return res.Job.ID, nil
}

// Name is the queue this client inserts into and works.
func (q *Queue[TTx]) Name() string { return q.queue }

// Local reports whether the queue is this process's own (IsLocal).
func (q *Queue[TTx]) Local() bool { return IsLocal(q.queue) }

// SetFirer sets who fires schedules; call it before Start.
func (q *Queue[TTx]) SetFirer(f scheduler.Firer) { q.fire.firer.Store(&f) }

// Cancel cancels a job: at once if it has not started, else through the
// instance running it (its context is cancelled with ErrJobCancelledRemotely).
func (q *Queue[TTx]) Cancel(ctx context.Context, jobID int64) error {
	_, err := q.client.JobCancel(ctx, jobID)
	if errors.Is(err, river.ErrNotFound) {
		return nil
	}
	return err
}

// CancelTx cancels a job inside tx, which must be the driver's transaction
// type. Used on the job of a run whose process died: River marks it
// cancel-requested, and its rescuer later ends it without running it.
func (q *Queue[TTx]) CancelTx(ctx context.Context, tx any, jobID int64) error {
	t, ok := tx.(TTx)
	if !ok {
		return fmt.Errorf("cancel: transaction is %T", tx)
	}
	_, err := q.client.JobCancelTx(ctx, t, jobID)
	if errors.Is(err, river.ErrNotFound) {
		return nil
	}
	return err
}

// Start works jobs with exec until Stop.
func (q *Queue[TTx]) Start(ctx context.Context, exec research.Executor) error {
	q.worker.exec.Store(&exec)
	if err := q.client.Start(ctx); err != nil {
		return err
	}
	q.started.Store(true)
	return nil
}

// Stop stops fetching jobs and waits for running ones until ctx ends, then
// cancels them (their runs persist progress and are resumed by a retry).
func (q *Queue[TTx]) Stop(ctx context.Context) error {
	if !q.started.Load() {
		return nil
	}
	err := q.client.Stop(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		hard, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return q.client.StopAndCancel(hard)
	}
	return err
}

// Migrate applies River's own migrations.
func Migrate[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], schema string) error {
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// Validate returns an error when River's migrations are behind.
func Validate[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], schema string) error {
	m, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	res, err := m.Validate(ctx, nil)
	if err != nil {
		return err
	}
	if !res.OK {
		return fmt.Errorf("river queue tables: %v", res.Messages)
	}
	return nil
}
