package console

import (
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// TestQueuedRunCancel: on a route allowing one call at once, busy with
// another user's run, the console's quote counts the wait in its runtime;
// the confirmed run's line says "queued: 0 ahead on this route, starts in
// about ..." with only Cancel (c1); c1 ends it cancelled at $0 and gives the
// hold back at once, while the other call still streams.
func TestQueuedRunCancel(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{RoutesFor: testbed.OneCallRoute}, false)
	busy, release := r.b.BusyRoute(t, billing.Identity{Platform: "telegram", ExternalID: "77"}, "gpt-test")
	balance := func() billing.Money { return r.b.Available(t, you, billing.BucketCredit) }
	before := balance()

	r.con.Handle(t.Context(), "/research AAPL quick gpt-test")
	quote := r.screen.WaitFor(t, "[1] Confirm", 1)
	if !strings.Contains(quote, "waiting for the route") {
		t.Fatalf("the quote's runtime does not count the wait:\n%s", quote)
	}
	r.con.Handle(t.Context(), "1")
	screen := r.screen.WaitFor(t, "queued: 0 ahead on this route, starts in about ", 1)
	line := screen[strings.LastIndex(screen, "… run 1:"):]
	line = line[:strings.Index(line, "\n")]
	if !strings.Contains(line, ": queued") || !strings.HasSuffix(line, "c1 Cancel") || strings.Contains(line, "Pause") {
		t.Fatalf("queued line: %q", line)
	}
	if balance() == before {
		t.Fatal("the queued run holds nothing")
	}
	r.con.Handle(t.Context(), "c1")
	final := r.screen.WaitFor(t, "cancelled ==", 1)
	if !strings.Contains(final[strings.LastIndex(final, "cancelled =="):], "Charged $0.00") {
		t.Fatalf("final after cancel while queued:\n%s", final)
	}
	// The hold is back while Bob's call still streams: only his is open.
	if got := balance(); got != before {
		t.Fatalf("available after the cancel %s, before the run %s", got, before)
	}
	if n := r.b.OpenHolds(); n != 1 || len(r.b.LLM.Requests()) != 1 {
		t.Fatalf("%d holds open (want Bob's only), %d requests reached the route (want 1)", n, len(r.b.LLM.Requests()))
	}
	release()
	r.b.Events.WaitFinal(t, busy.ID, time.Minute)
	r.b.CheckSettled()
}
