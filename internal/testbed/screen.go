package testbed

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// Screen is a concurrency-safe writer that tests read and wait on: a
// terminal, a log. Writes signal waiters; nothing polls.
type Screen struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

// Write implements io.Writer.
func (s *Screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.buf.Write(p)
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return n, err
}

// String returns everything written so far.
func (s *Screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// WaitFor waits until want has been written count times, and returns the
// screen; it fails the test after 30 s.
func (s *Screen) WaitFor(t testing.TB, want string, count int) string {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		text := s.buf.String()
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		if strings.Count(text, want) >= count {
			return text
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("never saw %q %d times; the screen shows:\n%s", want, count, text)
		}
	}
}
