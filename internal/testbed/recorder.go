package testbed

import (
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/research"
)

// Recorder is a research.Sink that keeps every event and lets tests wait for
// one that matches, on a signal rather than a sleep.
type Recorder struct {
	// Slim keeps of each event only the run's id, state, error and stages
	// done, the tokens out, the note and Final (a benchmark reading the heap
	// must not count every event's snapshot of its run). Set before use.
	Slim bool

	mu      sync.Mutex
	events  []research.Event
	slim    []slimEvent // instead of events, when Slim
	byRun   map[string][]int
	changed chan struct{}
}

// len and at read the events kept, whole or slim; r.mu is held.
func (r *Recorder) len() int { return len(r.events) + len(r.slim) }

func (r *Recorder) at(i int) research.Event {
	if i < len(r.events) {
		return r.events[i]
	}
	return r.slim[i-len(r.events)].event()
}

// NewRecorder makes an empty recorder.
func NewRecorder() *Recorder { return &Recorder{changed: make(chan struct{})} }

// Publish implements research.Sink.
func (r *Recorder) Publish(ev research.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byRun == nil {
		r.byRun = map[string][]int{}
	}
	r.byRun[ev.Run.ID] = append(r.byRun[ev.Run.ID], r.len())
	if r.Slim {
		r.slim = append(r.slim, slimOf(ev))
	} else {
		r.events = append(r.events, ev)
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// Of returns the events of one run, in order.
func (r *Recorder) Of(runID string) []research.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []research.Event
	for _, i := range r.byRun[runID] {
		if ev := r.at(i); ev.Run.ID == runID {
			out = append(out, ev)
		}
	}
	return out
}

// Wait returns the first event of runID that match accepts, failing the test
// after timeout.
func (r *Recorder) Wait(t testing.TB, runID string, timeout time.Duration, match func(research.Event) bool) research.Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, i := range r.byRun[runID] {
			if ev := r.at(i); ev.Run.ID == runID && match(ev) {
				r.mu.Unlock()
				return ev
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			var states []string
			for _, ev := range r.Of(runID) {
				states = append(states, string(ev.Run.State)+"/"+ev.Note)
			}
			t.Fatalf("run %s: no matching event within %s; saw %v", runID, timeout, states)
		}
	}
}

// WaitFinal waits for a run's final event.
func (r *Recorder) WaitFinal(t testing.TB, runID string, timeout time.Duration) research.Event {
	t.Helper()
	return r.Wait(t, runID, timeout, func(ev research.Event) bool { return ev.Final })
}
