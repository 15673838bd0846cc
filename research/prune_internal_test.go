package research

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPruneCancels: cancel requests whose run settled elsewhere are
// forgotten once old; recent ones stay.
func TestPruneCancels(t *testing.T) {
	t.Parallel()
	e := &Engine{}
	now := time.Now()
	for i := range 100 {
		e.cancels.Store("old"+string(rune('a'+i%26))+string(rune('a'+i/26)), now.Add(-2*time.Hour))
	}
	e.cancels.Store("recent", now)
	if n := e.pruneCancels(now.Add(-time.Hour)); n != 100 {
		t.Fatalf("pruned %d, want 100", n)
	}
	if _, ok := e.cancels.Load("recent"); !ok {
		t.Fatal("a recent cancel was forgotten")
	}
}

// downStore is a store whose lease calls fail while down is set.
type downStore struct {
	Store
	down  atomic.Bool
	calls atomic.Int64
	tick  chan int64
}

func (s *downStore) RenewLeases(context.Context, string, time.Time) (int64, error) {
	n := s.calls.Add(1)
	select {
	case s.tick <- n:
	default:
	}
	if s.down.Load() {
		return 0, errors.New("connect: connection refused")
	}
	return 0, nil
}

func (s *downStore) LapsedRuns(context.Context, time.Time, int) ([]Run, error)  { return nil, nil }
func (s *downStore) EndedLapsed(context.Context, time.Time, int) ([]Run, error) { return nil, nil }

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestWatchLogsWithBackoff: while the database is down the lease watcher
// logs its 1st, 2nd, 4th... failure in a row, not one per tick, and once
// when it works again.
func TestWatchLogsWithBackoff(t *testing.T) {
	t.Parallel()
	s := &downStore{tick: make(chan int64, 1)}
	s.down.Store(true)
	var out lockedBuf
	e := &Engine{Store: s, Log: slog.New(slog.NewTextHandler(&out, nil))}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { e.Watch(ctx, time.Millisecond); close(done) }()
	wait := func(n int64) int64 {
		t.Helper()
		for {
			select {
			case got := <-s.tick:
				if got >= n {
					return got
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("the watcher stopped before %d ticks", n)
			}
		}
	}
	failed := wait(100)
	s.down.Store(false)
	wait(failed + 2)
	stop()
	<-done
	text := out.b.String()
	if n := strings.Count(text, `msg="watch run leases" err=`); n < 7 || n > 8 {
		t.Fatalf("%d failure lines over about %d failing ticks, want 7 or 8 (1st, 2nd, 4th ... 64th, 128th):\n%s", n, failed, text)
	}
	if n := strings.Count(text, "works again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", n, text)
	}
}
