package bots_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// TestQueuedRunCard: on a route allowing one call at once, busy with
// another user's run, a quote's runtime includes the wait; the confirmed
// run's card says it is queued, where and for how long, and offers Cancel
// only; Cancel frees its place and its hold at once (nothing was sent, so
// nothing is charged), before the busy call ends.
func TestQueuedRunCard(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{RoutesFor: testbed.OneCallRoute})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	busy, release := c.b.BusyRoute(t, bob, "gpt-test")

	quote := one(t, c.say(t, alice, "/research AAPL quick gpt-test"))
	var runtime string
	for _, f := range quote.View.Fields {
		if f.Name == "Expected runtime" {
			runtime = f.Value
		}
	}
	if !strings.Contains(runtime, "waiting for the route") {
		t.Fatalf("the quote's runtime does not count the wait: %q", runtime)
	}
	one(t, c.press(t, alice, button(t, quote.View, "Confirm"), "m1"))
	queued := waitView(t, c, "m1", func(v bots.View) bool {
		return strings.Contains(v.Text, "queued: 0 ahead on this route, starts in about ")
	})
	if !strings.HasSuffix(queued.Title, ": queued") || len(queued.Buttons) != 1 || len(queued.Buttons[0]) != 1 || queued.Buttons[0][0].Label != "Cancel" {
		t.Fatalf("queued card: %q, buttons %+v", queued.Title, queued.Buttons)
	}
	if r := one(t, c.press(t, alice, queued.Buttons[0][0].Data, "m1")); r.Refused {
		t.Fatalf("cancel while queued = %+v", r)
	}
	final := c.screen.waitFinal(t, "m1")
	if !strings.Contains(final.Title, "cancelled") || !strings.Contains(final.Fields[0].Value, "Charged $0.00") {
		t.Fatalf("final after cancel while queued: %q %q", final.Title, final.Fields[0].Value)
	}
	// Alice's hold is gone while Bob's call still streams: only his is open.
	if n := c.b.OpenHolds(); n != 1 || len(c.b.LLM.Requests()) != 1 {
		t.Fatalf("%d holds open (want Bob's only), %d requests reached the route (want 1)", n, len(c.b.LLM.Requests()))
	}
	release()
	deadline := time.Now().Add(time.Minute)
	for r, err := c.b.Store.Run(t.Context(), busy.ID); !r.State.Terminal(); r, err = c.b.Store.Run(t.Context(), busy.ID) {
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("the busy run: %s, %v", r.State, err)
		}
		time.Sleep(10 * time.Millisecond) // polling the store's state, not synchronising goroutines
	}
	c.b.CheckSettled()
}

// waitView waits for a view of msg that ok accepts.
func waitView(t *testing.T, c *chat, msg string, ok func(bots.View) bool) bots.View {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		c.screen.mu.Lock()
		for _, v := range c.screen.views[msg] {
			if ok(v) {
				c.screen.mu.Unlock()
				return v
			}
		}
		ch := c.screen.changed
		c.screen.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no such view on %s", msg)
		}
	}
}
