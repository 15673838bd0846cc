package bots_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
)

func field(v bots.View, name string) string { return fieldOf(v, name) }

// text is a reply's words: its alert, or its view's title and text.
func text(r bots.Reply) string { return r.Alert + r.View.Title + " " + r.View.Text }

// TestReceiptByRunIDAndLink: /receipt takes the run id /usage lists first and
// a pasted receipt link, and the receipt says what was bought.
func TestReceiptByRunIDAndLink(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	quote := one(t, c.say(t, alice, "/research NVDA AMD quick"))
	one(t, c.press(t, alice, button(t, quote.View, "Confirm"), "m1"))
	c.screen.waitFinal(t, "m1")
	usage := one(t, c.say(t, alice, "/usage"))
	runID := ""
	for _, line := range strings.Split(usage.View.Text, "\n") {
		if strings.Contains(line, "succeeded") {
			runID = strings.Fields(line)[2]
		}
	}
	byRun := one(t, c.say(t, alice, "/receipt "+runID))
	if !strings.HasPrefix(byRun.View.Title, "Receipt ") || field(byRun.View, "Run") != runID {
		t.Fatalf("/receipt RUN (%s) = %+v", runID, byRun)
	}
	if got := field(byRun.View, "Bought"); got != "research NVDA, AMD (quick)" {
		t.Errorf("Bought = %q", got)
	}
	token := strings.TrimPrefix(byRun.View.Title, "Receipt ")
	for _, link := range []string{"https://forgebot.example.com/r/" + token, "http://127.0.0.1:8080/r/" + token + "/", "http://x/r/" + token + "?a=1",
		"<http://127.0.0.1:8080/r/" + token + ">", `"http://x/r/` + token + `".`, token + "."} {
		if r := one(t, c.say(t, alice, "/receipt "+link)); r.View.Title != "Receipt "+token {
			t.Errorf("/receipt %s = %+v", link, r)
		}
	}
	if r := one(t, c.say(t, bob, "/receipt "+runID)); !strings.Contains(r.View.Text, "Not found") {
		t.Errorf("bob reading alice's run receipt = %+v", r)
	}
}

// TestNewcomerTraps: each small trap of issue 15, as a user meets it.
func TestNewcomerTraps(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)

	// A second Cancel on a declined quote says so, not "Something went wrong".
	q := one(t, c.say(t, alice, "/research AAPL quick"))
	decline := button(t, q.View, "Cancel")
	if r := one(t, c.press(t, alice, decline, "m1")); !strings.Contains(r.View.Text, "Nothing was held") {
		t.Fatalf("first decline = %+v", r)
	}
	if r := one(t, c.press(t, alice, decline, "m1")); !strings.Contains(r.Alert, "cancelled or replaced") || strings.Contains(text(r), "went wrong") {
		t.Fatalf("second decline = %+v", r)
	}

	// An unknown depth is refused, not quoted as a symbol; a ticker in capitals passes.
	for _, cmd := range []string{"/research AAPL ultra", "/research AAPL quik", "/research aapl standart", "/research AAPL fast"} {
		if r := one(t, c.say(t, alice, cmd)); !strings.Contains(r.View.Text, "Unknown depth") || r.View.Kind == bots.KindQuote {
			t.Errorf("%s = %+v", cmd, r.View)
		}
	}
	if r := one(t, c.say(t, alice, "/research FAST quick")); r.View.Kind != bots.KindQuote {
		t.Errorf("/research FAST = %+v", r.View)
	}

	// A non-ASCII symbol's refusal names the character.
	if r := one(t, c.say(t, alice, "/research НВДА")); !strings.Contains(r.View.Text, "'Н'") || strings.Contains(r.View.Text, "Ð") {
		t.Errorf("/research НВДА = %q", r.View.Text)
	}

	// Unknown commands and models are not echoed at length.
	long := strings.Repeat("x", 10000)
	for _, cmd := range []string{"/" + long, "/research AAPL model:" + long} {
		if r := one(t, c.say(t, alice, cmd)); len(r.View.Text) > 300 || !strings.Contains(r.View.Text, "Unknown") {
			t.Errorf("%.20s… = %d chars: %.200s", cmd, len(r.View.Text), r.View.Text)
		}
	}

	// /help states each depth's limit, and a symbol named twice counts once.
	help := one(t, c.say(t, alice, "/help")).View.Text
	if !strings.Contains(help, "up to 3 symbols quick, 5 standard, 10 deep") {
		t.Errorf("/help = %s", help)
	}
	if r := one(t, c.say(t, alice, "/research AAPL aapl AAPL MSFT NVDA quick")); r.View.Kind != bots.KindQuote || !strings.Contains(r.View.Title, "AAPL, MSFT, NVDA") {
		t.Errorf("duplicates counted: %+v", r.View)
	}
	if r := one(t, c.say(t, alice, "/research AAPL MSFT NVDA AMD quick")); !strings.Contains(r.View.Text, "up to 3 symbols, you gave 4") {
		t.Errorf("four symbols quick = %q", r.View.Text)
	}

	// /watchlist show NAME shows that list only.
	one(t, c.say(t, alice, "/watchlist add chips NVDA AMD"))
	if r := one(t, c.say(t, alice, "/watchlist show chips")); r.View.Text != "NVDA AMD" || !strings.Contains(r.View.Title, "chips") {
		t.Errorf("/watchlist show chips = %+v", r.View)
	}
	if r := one(t, c.say(t, alice, "/watchlist show us-megacaps")); !strings.Contains(r.View.Title, "preset") || strings.Contains(r.View.Text, "chips") {
		t.Errorf("/watchlist show us-megacaps = %+v", r.View)
	}
	if r := one(t, c.say(t, alice, "/watchlist show nope")); !strings.Contains(r.View.Text, `No watchlist "nope"`) {
		t.Errorf("/watchlist show nope = %+v", r.View)
	}

	// A button on a run that ended says so in one clause.
	q = one(t, c.say(t, alice, "/research AAPL quick"))
	conf := one(t, c.press(t, alice, button(t, q.View, "Confirm"), "m2"))
	cancel := button(t, conf.View, "Cancel")
	c.screen.waitFinal(t, "m2")
	if r := one(t, c.press(t, alice, cancel, "m2")); r.Alert != "That is no longer possible: the run already succeeded." {
		t.Errorf("cancel after the end = %q", r.Alert)
	}
}

// TestPausedRunCard: a paused run's card counts no time left, and /usage
// shows the same cost so far as the card.
func TestPausedRunCard(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{Pace: 3 * time.Millisecond})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	q := one(t, c.say(t, alice, "/research AAPL MSFT NVDA deep"))
	conf := one(t, c.press(t, alice, button(t, q.View, "Confirm"), "m1"))
	c.waitView(t, "m1", func(v bots.View) bool { return strings.Contains(v.Text, "stage 4/") })
	if r := one(t, c.press(t, alice, button(t, conf.View, "Pause"), "m1")); !strings.Contains(r.Alert, "Pausing") {
		t.Fatalf("pause = %+v", r)
	}
	paused := c.waitView(t, "m1", func(v bots.View) bool { return strings.HasSuffix(v.Title, ": paused") })
	if tm := fieldOf(paused, "Time"); strings.Contains(tm, "left") {
		t.Errorf("paused card says %q", tm)
	}
	soFar := strings.Fields(fieldOf(paused, "Cost so far"))[0]
	if u := one(t, c.say(t, alice, "/usage")).View.Text; !strings.Contains(u, "paused: "+soFar+" so far of ") {
		t.Errorf("/usage = %q, card says %s so far", u, soFar)
	}
	one(t, c.press(t, alice, runButtonOf(t, c, "Cancel"), "m1"))
	c.screen.waitFinal(t, "m1")
	c.b.CheckLedger()
}

// waitView waits for a view on msg that ok accepts.
func (c *chat) waitView(t *testing.T, msg string, ok func(bots.View) bool) bots.View {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.screen.mu.Lock()
		views := c.screen.views[msg]
		ch := c.screen.changed
		c.screen.mu.Unlock()
		for _, v := range views {
			if ok(v) {
				return v
			}
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no such view on %s: %+v", msg, views)
		}
	}
}
