package riverqueue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tokensforge/forgebot/scheduler"
)

type recordingFirer struct {
	id                string
	at                time.Time
	attempt, maxTries int
}

func (r *recordingFirer) Fire(_ context.Context, id string, at time.Time, attempt, maxAttempts int) error {
	r.id, r.at, r.attempt, r.maxTries = id, at, attempt, maxAttempts
	return nil
}

// TestFireWorkerPassesAttempts: the fire job tells the firer which attempt
// this is and how many River makes, so the last one can record a failure.
func TestFireWorkerPassesAttempts(t *testing.T) {
	t.Parallel()
	w := &fireWorker{}
	job := &river.Job[FireArgs]{JobRow: &rivertype.JobRow{Attempt: 2, MaxAttempts: MaxAttempts},
		Args: FireArgs{ScheduleID: "s1", At: time.Date(2026, 4, 5, 14, 45, 0, 0, time.UTC)}}
	if err := w.Work(t.Context(), job); err == nil {
		t.Fatal("a fire job worked with no firer set")
	}
	rec := &recordingFirer{}
	var f scheduler.Firer = rec
	w.firer.Store(&f)
	if err := w.Work(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	if rec.id != "s1" || !rec.at.Equal(job.Args.At) || rec.attempt != 2 || rec.maxTries != MaxAttempts {
		t.Fatalf("firer got %+v", rec)
	}
}

// TestLocalQueueNames: every process gets a queue of its own that River
// accepts, recognisable as local; serve's is the shared one.
func TestLocalQueueNames(t *testing.T) {
	t.Parallel()
	a, b := LocalQueue(), LocalQueue()
	if a == b || !IsLocal(a) || IsLocal(SharedQueue) || QueueFor(false) != SharedQueue || !IsLocal(QueueFor(true)) {
		t.Fatalf("queues %q %q %q", a, b, SharedQueue)
	}
	if !IsLocal(FireQueue(a)) || IsLocal(FireQueue(SharedQueue)) || FireQueue(a) == a {
		t.Fatalf("fire queues %q %q", FireQueue(a), FireQueue(SharedQueue))
	}
	for _, q := range []string{a, SharedQueue, FireQueue(a), FireQueue(SharedQueue)} {
		if _, err := river.NewClient[any](nil, &river.Config{Queues: map[string]river.QueueConfig{q: {MaxWorkers: 1}}, Workers: river.NewWorkers()}); err != nil && strings.Contains(err.Error(), "queue name") {
			t.Fatalf("River refuses queue %q: %v", q, err)
		}
	}
}
