package bots_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/scheduler"
)

// scheduleChat is a chat whose conversation has schedules, set up as given.
func scheduleChat(t *testing.T, opts testbed.Options, svc scheduler.Service) *chat {
	c := newChat(t, opts)
	svc.Store, svc.Engine, svc.Now, svc.Notify = c.b.Store, c.b.Engine, c.b.Clock.Now, c.conv.Notify
	c.conv.Schedules = &svc
	c.b.Store.SetFirer(c.conv.Schedules)
	return c
}

// makeSchedule proposes and confirms a schedule through the chat.
func makeSchedule(t *testing.T, c *chat, words string) (quote bots.View, id string) {
	t.Helper()
	q := one(t, c.say(t, alice, "/schedule "+words))
	if q.View.Kind != bots.KindQuote {
		t.Fatalf("/schedule %s = %+v", words, q.View)
	}
	conf := one(t, c.press(t, alice, button(t, q.View, "Confirm schedule"), "m0"))
	_, rest, ok := strings.Cut(conf.View.Text, ", id ")
	if !ok {
		t.Fatalf("confirm = %+v", conf.View)
	}
	id, _, _ = strings.Cut(rest, ".")
	return q.View, id
}

// TestSchedulePolicyText: the policies a quote and /schedule list show come
// from the service's settings, and name every rule: overlap, catch-up,
// balance, the cost cap, pause and resume, failures, DST and the limits.
func TestSchedulePolicyText(t *testing.T) {
	t.Parallel()
	c := scheduleChat(t, testbed.Options{NoWorkers: true}, scheduler.Service{CatchUp: 90 * time.Minute, MinInterval: 2 * time.Hour, MaxPerAccount: 3})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	quote, id := makeSchedule(t, c, "daily 09:00 research AAPL cap:0.50")
	if quote.Title != "Schedule: quick research on AAPL" {
		t.Errorf("quote title = %q", quote.Title)
	}
	list := one(t, c.say(t, alice, "/schedule list")).View.Text
	if !strings.Contains(list, id+"  active: research on AAPL") || !strings.Contains(list, "cap $0.50") {
		t.Fatalf("list:\n%s", list)
	}
	for where, text := range map[string]string{"quote": fieldOf(quote, "Policies"), "list": list} {
		for _, want := range []string{
			"previous run is still going is skipped",
			"the latest missed time runs once if it is at most 1 h 30 min late",
			"too little balance skips the run",
			"Cost cap (cap:AMOUNT): a run whose quote holds more than the cap is skipped, with a notice",
			"Pause and resume: a paused schedule does not run",
			"times due while paused are dropped, not replayed",
			"recorded as failed, with a notice",
			"repeated time (fall back) fires once",
			"at least 2 h between runs; up to 3 schedules per account",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("%s policies lack %q:\n%s", where, want, text)
			}
		}
		if strings.Contains(text, "within 1 h") || strings.Contains(text, "at most 1 h late") {
			t.Errorf("%s policies show a catch-up window the service does not have:\n%s", where, text)
		}
	}
	if len(fieldOf(quote, "Policies")) > 1024 {
		t.Errorf("policies are %d bytes, over a Discord field's 1024", len(fieldOf(quote, "Policies")))
	}

	// A service left at its defaults says so.
	d := scheduleChat(t, testbed.Options{NoWorkers: true}, scheduler.Service{})
	d.b.Fund(alice, billing.BucketCredit, billing.Micro)
	dq, _ := makeSchedule(t, d, "daily 09:00 research AAPL")
	if p := fieldOf(dq, "Policies"); !strings.Contains(p, "at most 1 h late") || !strings.Contains(p, "at least 1 h between runs; up to 10 schedules") {
		t.Errorf("default policies:\n%s", p)
	}
}

// TestScheduleRunNow: /schedule run ID makes a normal quote of the
// schedule's run for now; confirming it runs and settles like any run. Only
// the owner may, and a bad or missing ID gets a clear answer.
func TestScheduleRunNow(t *testing.T) {
	t.Parallel()
	c := scheduleChat(t, testbed.Options{}, scheduler.Service{})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	_, id := makeSchedule(t, c, "weekdays 16:30 research NVDA AMD tz:America/New_York")

	if r := one(t, c.say(t, bob, "/schedule run "+id)); r.View.Kind != bots.KindError || !strings.Contains(r.View.Text, "Only the person") {
		t.Errorf("bob runs alice's schedule: %+v", r.View)
	}
	for text, want := range map[string]string{"/schedule run": "Usage: /schedule run ID", "/schedule run sNOPE": "Not found"} {
		if r := one(t, c.say(t, alice, text)); r.View.Kind != bots.KindError || !strings.Contains(r.View.Text, want) {
			t.Errorf("%q = %+v, want %q", text, r.View, want)
		}
	}
	if c.b.OpenHolds() != 0 {
		t.Fatal("refused runs held money")
	}

	q := one(t, c.say(t, alice, "/schedule run "+id))
	// Its quote, card and final say the schedule made it (issue 15).
	if q.View.Kind != bots.KindQuote || q.View.Title != "Quote for schedule "+id+": quick research on NVDA, AMD" {
		t.Fatalf("/schedule run = %+v", q.View)
	}
	conf := one(t, c.press(t, alice, button(t, q.View, "Confirm"), "m1"))
	if conf.View.Kind != bots.KindProgress || !strings.HasPrefix(conf.View.Title, "Scheduled ("+id+")") {
		t.Fatalf("confirm = %+v", conf)
	}
	if final := c.screen.waitFinal(t, "m1"); !strings.Contains(final.Title, "succeeded") || !strings.HasPrefix(final.Title, "Scheduled ("+id+")") {
		t.Fatalf("final = %+v", final)
	}
	// Running it now is not one of its fire times: nothing is recorded, and
	// the schedule keeps its next time.
	fires, err := c.b.Store.Fires(t.Context(), id, 10)
	if err != nil || len(fires) != 0 {
		t.Fatalf("fires = %+v, %v", fires, err)
	}
	c.b.CheckSettled()
}
