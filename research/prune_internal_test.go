package research

import (
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
