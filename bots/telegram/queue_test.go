package telegram_test

import (
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// TestQueuedRunCancel: on a route allowing one call at once, busy with
// another user's run, the quote's runtime counts the wait; after Confirm the
// message says "queued: 0 ahead on this route, starts in about ..." with a
// Cancel button only; pressing it ends the run cancelled at $0 and gives the
// hold back at once, while the other call still streams; no call drew a 429.
func TestQueuedRunCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{RoutesFor: testbed.OneCallRoute}, start: true})
	b.bed.Fund(who(alice), billing.BucketCredit, billing.Micro)
	busy, release := b.bed.BusyRoute(t, who(bob), "gpt-test")
	available := func() billing.Money { return b.bed.Available(t, who(alice), billing.BucketCredit) }
	before := available()

	dm := telegramtest.Private(alice)
	b.fake.SendText(dm, alice, "/research AAPL quick gpt-test")
	quote := b.reply(t, dm.ID, "Quote: quick research on AAPL")
	if !strings.Contains(quote.Visible, "waiting for the route") {
		t.Fatalf("the quote's runtime does not count the wait:\n%s", quote.Visible)
	}
	b.fake.WaitAnswer(t, b.fake.Press(dm, alice, quote.ID, button(t, quote, "Confirm")))
	var queued telegramtest.Message
	b.fake.Wait(t, wait, "the queued card", func() bool {
		queued, _ = b.fake.Message(dm.ID, quote.ID)
		return strings.Contains(queued.Visible, "queued: 0 ahead on this route, starts in about ")
	})
	if btns := queued.Buttons(); len(btns) != 1 || btns[0].Text != "Cancel" {
		t.Fatalf("queued card buttons = %s", queued.Markup)
	}
	if available() == before {
		t.Fatal("the queued run holds nothing")
	}
	if ans := b.fake.WaitAnswer(t, b.fake.Press(dm, alice, quote.ID, button(t, queued, "Cancel"))); !strings.Contains(ans.Fields["text"], "Cancel") {
		t.Fatalf("cancel answer = %v", ans.Fields)
	}
	final := b.final(t, dm.ID, quote.ID)
	if !strings.Contains(final.Visible, "AAPL: cancelled") || !strings.Contains(final.Visible, "Charged $0.00") {
		t.Fatalf("final = %s", final.Visible)
	}
	if got := available(); got != before {
		t.Fatalf("available after the cancel %s, before the run %s", got, before)
	}
	if n := b.bed.OpenHolds(); n != 1 || len(b.bed.LLM.Requests()) != 1 {
		t.Fatalf("%d holds open (want Bob's only), %d requests reached the route (want 1)", n, len(b.bed.LLM.Requests()))
	}
	release()
	b.events.WaitFinal(t, busy.ID, wait)
	b.bed.CheckSettled()
	if n := b.fake.TooManyAnswered(); n != 0 {
		t.Errorf("%d calls broke Telegram's rate limits", n)
	}
}
