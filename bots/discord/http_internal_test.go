package discord

import (
	"strconv"
	"testing"
	"time"
)

// TestReplayGuard: an id is refused again until its timestamp goes stale,
// then forgotten; the guard never holds more than maxRemembered ids, and
// says once when it starts forgetting early.
func TestReplayGuard(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	overflows := 0
	g := &replayGuard{overflow: func() { overflows++ }}
	stale := now.Add(maxSignatureAge)
	if !g.first("1", stale, now) || g.first("1", stale, now.Add(4*time.Minute)) {
		t.Fatal("a repeat inside the window was taken")
	}
	if !g.first("1", stale.Add(maxSignatureAge), stale) || len(g.until) != 1 {
		t.Fatalf("an id past its window was not forgotten (%d held)", len(g.until))
	}

	later := stale.Add(time.Hour) // "1" is stale again by then
	for i := range maxRemembered + 10 {
		if !g.first(strconv.Itoa(i+2), later.Add(time.Duration(i)*time.Millisecond+maxSignatureAge), later) {
			t.Fatalf("id %d refused", i+2)
		}
	}
	if len(g.until) != maxRemembered || len(g.queue) != maxRemembered || overflows != 1 {
		t.Fatalf("held %d ids (%d queued), %d overflow reports; want %d, %d, 1", len(g.until), len(g.queue), overflows, maxRemembered, maxRemembered)
	}
	// The ids forgotten early are those closest to going stale.
	if _, ok := g.until["2"]; ok {
		t.Fatal("the oldest id was kept over newer ones")
	}
	if g.first(strconv.Itoa(maxRemembered+11), later, later) {
		t.Fatal("the newest id was forgotten")
	}
}
