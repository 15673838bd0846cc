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
	mu      sync.Mutex
	events  []research.Event
	changed chan struct{}
}

// NewRecorder makes an empty recorder.
func NewRecorder() *Recorder { return &Recorder{changed: make(chan struct{})} }

// Publish implements research.Sink.
func (r *Recorder) Publish(ev research.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	close(r.changed)
	r.changed = make(chan struct{})
}

// Of returns the events of one run, in order.
func (r *Recorder) Of(runID string) []research.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []research.Event
	for _, ev := range r.events {
		if ev.Run.ID == runID {
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
		for _, ev := range r.events {
			if ev.Run.ID == runID && match(ev) {
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
