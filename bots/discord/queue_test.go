package discord_test

import (
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/discord/discordtest"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research/llm"
)

// TestQueuedRunCancel: on a route allowing one call at once, busy with
// another user's run, the quote's runtime counts the wait; the run's public
// message says "queued: 0 ahead on this route, starts in about ..." with a
// Cancel button only; clicking it ends the run cancelled at $0 and gives the
// hold back at once, while the other call still streams.
func TestQueuedRunCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{RoutesFor: func(url string) []llm.Route {
		r := apiRoutes(url)
		r[0].Limits = llm.Limits{Concurrent: 1}
		return r
	}}})
	b.bed.Fund(identity(alice), billing.BucketCredit, billing.Micro)
	busy, release := b.bed.BusyRoute(t, identity(bob), "gpt-test")
	available := func() billing.Money { return b.bed.Available(t, identity(alice), billing.BucketCredit) }
	before := available()

	qin, _ := b.command(t, alice, "research", discordtest.String("symbols", "AAPL"), discordtest.String("model", "gpt-test"))
	quote := b.original(t, qin)
	if !strings.Contains(text(quote), "waiting for the route") {
		t.Fatalf("the quote's runtime does not count the wait:\n%s", text(quote))
	}
	b.click(t, alice, quote, button(t, quote, "Confirm"))
	progress := b.progressMessage(t)
	queued := b.channelMessage(t, progress.ID, "the queued card", func(m discordtest.Message) bool {
		return strings.Contains(text(m), "queued: 0 ahead on this route, starts in about ")
	})
	if got := strings.Join(labels(queued), "|"); got != "Cancel" || !strings.Contains(title(queued), "queued") {
		t.Fatalf("queued card %q, buttons %s", title(queued), got)
	}
	if available() == before {
		t.Fatal("the queued run holds nothing")
	}
	b.click(t, alice, queued, button(t, queued, "Cancel"))
	final := b.channelMessage(t, progress.ID, "the cancelled final", func(m discordtest.Message) bool {
		return strings.Contains(title(m), "cancelled")
	})
	if !strings.Contains(text(final), "Charged $0.00") {
		t.Fatalf("final after cancel while queued:\n%s", text(final))
	}
	if got := available(); got != before {
		t.Fatalf("available after the cancel %s, before the run %s", got, before)
	}
	if n := b.bed.OpenHolds(); n != 1 || len(b.bed.LLM.Requests()) != 1 {
		t.Fatalf("%d holds open (want Bob's only), %d requests reached the route (want 1)", n, len(b.bed.LLM.Requests()))
	}
	release()
	b.bed.Events.WaitFinal(t, busy.ID, wait)
	if err := b.ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.bed.CheckSettled()
}
