package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/console"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/scheduler"
)

func TestDSTFireTimes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec string
		from time.Time
		want string
	}{
		// Spring forward (2026-03-08): 02:30 does not exist and is skipped that day.
		{"30 2 * * *", time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC), "03-09 02:30 EDT, 03-10 02:30 EDT, 03-11 02:30 EDT"},
		{"30 1 * * *", time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC), "03-08 01:30 EST, 03-09 01:30 EDT, 03-10 01:30 EDT"},
		// Fall back (2026-11-01): 01:30 happens twice and fires once, at the first.
		{"30 1 * * *", time.Date(2026, 10, 31, 12, 0, 0, 0, time.UTC), "11-01 01:30 EDT, 11-02 01:30 EST, 11-03 01:30 EST"},
		{"30 1 * * *", time.Date(2026, 11, 1, 5, 45, 0, 0, time.UTC), "11-02 01:30 EST, 11-03 01:30 EST, 11-04 01:30 EST"},
		{"0 16 * * 1-5", time.Date(2026, 11, 27, 22, 0, 0, 0, time.UTC), "11-30 16:00 EST, 12-01 16:00 EST, 12-02 16:00 EST"},
		// Intervals are elapsed time: the fall-back hour is not skipped.
		{"@every 1h", time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC), "11-01 01:00 EDT, 11-01 01:00 EST, 11-01 02:00 EST"},
	} {
		sp, err := scheduler.ParseSpec(tc.spec, "America/New_York")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, x := range sp.NextN(tc.from, 3) {
			got = append(got, x.In(sp.Zone).Format("01-02 15:04 MST"))
		}
		if strings.Join(got, ", ") != tc.want {
			t.Errorf("%q from %s = %v, want %s", tc.spec, tc.from, got, tc.want)
		}
	}
}

func TestBadSpecs(t *testing.T) {
	t.Parallel()
	for _, tc := range [][2]string{
		{"", "UTC"}, {"* * *", "UTC"}, {"61 * * * *", "UTC"}, {"0 9 * * *", "Mars/Olympus"}, {"0 9 * * *", "Local"},
		{"CRON_TZ=UTC 0 9 * * *", "UTC"}, {"TZ=Europe/Paris0 9 * * *", "UTC"}, {"@yearly\n0", "UTC"}, {"0 9 * * *", "Europe/Paris 0"},
	} {
		if _, err := scheduler.ParseSpec(tc[0], tc[1]); !errors.Is(err, scheduler.ErrBadSpec) {
			t.Errorf("ParseSpec(%q, %q) = %v, want ErrBadSpec", tc[0], tc[1], err)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"0 9 * * 1-5", "@daily", "@every 1h", "CRON_TZ=", "TZ=", "* * * * * *", "0 0 31 2 *", "@every -1s", "1-2/0 * * * *"} {
		f.Add(s, "America/New_York")
	}
	f.Fuzz(func(t *testing.T, spec, zone string) {
		sp, err := scheduler.ParseSpec(spec, zone)
		if err == nil {
			sp.NextN(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 3)
			sp.MinGap(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		}
		_, _ = scheduler.ParseCommand(scheduler.Tokenize(spec + " " + zone))
	})
}

func TestParseCommand(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`daily 09:00 scan us-megacaps`:                                  "0 9 * * *|scan|us-megacaps|quick|",
		`weekdays 16:30 research NVDA AMD standard tz:America/New_York`: "30 16 * * 1-5|research|NVDA,AMD|standard|America/New_York",
		`"0 9 * * 1" research AAPL deep cap:0.50`:                       "0 9 * * 1|research|AAPL|deep|",
		`@daily scan crypto-majors`:                                     "@daily|scan|crypto-majors|quick|",
	} {
		c, err := scheduler.ParseCommand(scheduler.Tokenize(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		what := strings.Join(c.Symbols, ",") + c.List
		if got := fmt.Sprintf("%s|%s|%s|%s|%s", c.Spec, c.Kind, what, c.Depth, c.Zone); got != want {
			t.Errorf("%s = %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{"", "daily", "daily 25:00 scan x", "daily 9 scan x", "daily 09:00", "daily 09:00 dance NVDA", "@daily scan a b", "@daily research AAPL cap:-1"} {
		if _, err := scheduler.ParseCommand(scheduler.Tokenize(in)); !errors.Is(err, scheduler.ErrBadSpec) {
			t.Errorf("%q: %v, want ErrBadSpec", in, err)
		}
	}
}

var (
	alice = billing.Identity{Platform: "console", ExternalID: "alice"}
	dest  = research.Destination{Platform: "console", ChatID: "alice"}
)

// rig is a bed with a scheduler on it.
type rig struct {
	b       *testbed.Bed
	svc     *scheduler.Service
	mu      sync.Mutex
	notices []string
}

func newRig(t *testing.T, opts testbed.Options) *rig {
	b := testbed.New(t, opts)
	r := &rig{b: b}
	r.svc = &scheduler.Service{Store: b.Store, Engine: b.Engine, Now: b.Clock.Now, Notify: func(_ context.Context, _ research.Destination, text string) {
		r.mu.Lock()
		r.notices = append(r.notices, text)
		r.mu.Unlock()
	}}
	b.Store.SetFirer(r.svc)
	return r
}

// make proposes and confirms a schedule.
func (r *rig) make(t *testing.T, words string) scheduler.Schedule {
	t.Helper()
	p, err := r.svc.Propose(t.Context(), alice, scheduler.Tokenize(words), dest)
	if err != nil {
		t.Fatalf("propose %q: %v", words, err)
	}
	sc, err := r.svc.Confirm(t.Context(), p.Schedule.ID, alice)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// fires waits until a schedule's newest fire has left Pending and returns the fires.
func (r *rig) settled(t *testing.T, id string, n int) []scheduler.Fire {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		fs, err := r.b.Store.Fires(t.Context(), id, 100)
		if err != nil {
			t.Fatal(err)
		}
		done := len(fs) >= n
		for _, f := range fs {
			done = done && f.Outcome != scheduler.Pending
		}
		if done {
			return fs
		}
		if time.Now().After(deadline) {
			t.Fatalf("fires of %s: %+v", id, fs)
		}
		time.Sleep(5 * time.Millisecond) // polling the store's state, not synchronising goroutines
	}
}

func TestProposeRefusals(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{NoWorkers: true})
	r.b.Fund(alice, billing.BucketCredit, billing.Micro)
	for words, want := range map[string]string{
		`"*/5 * * * *" research AAPL`:    "minimum is 1h",
		`@every 10m research AAPL`:       "minimum is 1h",
		`daily 09:00 research AAPL tz:X`: "unknown time zone",
		`"0 9 * *" research AAPL`:        "expected exactly 5 fields",
		`daily 09:00 research`:           "say what to run",
		`daily 09:00 scan nowhere`:       "unknown watchlist",
	} {
		if _, err := r.svc.Propose(t.Context(), alice, scheduler.Tokenize(words), dest); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", words, err, want)
		}
	}
	r.svc.MaxPerAccount = 2
	r.make(t, "daily 09:00 research AAPL")
	r.make(t, "daily 10:00 research MSFT")
	if _, err := r.svc.Propose(t.Context(), alice, scheduler.Tokenize("daily 11:00 research NVDA"), dest); err == nil || !strings.Contains(err.Error(), "the most an account may have") {
		t.Fatalf("third schedule: %v", err)
	}
	if r.b.OpenHolds() != 0 {
		t.Fatal("proposing held money")
	}
}

// TestTwoClaimersFireEachTimeOnce: two instances on one PostgreSQL claim the
// same due schedules at once; every time fires exactly once.
func TestTwoClaimersFireEachTimeOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{Postgres: true})
	r.b.Fund(alice, billing.BucketCredit, 10*billing.Micro)
	var ids []string
	base := r.b.Clock.Now().UTC().Add(2 * time.Hour).Truncate(time.Hour)
	for i := range 10 {
		ids = append(ids, r.make(t, fmt.Sprintf("daily %02d:%02d research AAPL", base.Hour(), i)).ID)
	}
	store2, engine2 := r.b.InstanceWithWorkers()
	svc2 := &scheduler.Service{Store: store2, Engine: engine2, Now: r.b.Clock.Now}
	store2.SetFirer(svc2)
	r.b.Clock.Advance(base.Add(15 * time.Minute).Sub(r.b.Clock.Now())) // every schedule is due once
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, s := range []*scheduler.Service{r.svc, svc2} {
		wg.Go(func() {
			n, err := s.Claim(context.Background())
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		})
	}
	wg.Wait()
	if counts[0]+counts[1] != 10 {
		t.Fatalf("claimed %v, want 10 in all", counts)
	}
	for _, id := range ids {
		fs := r.settled(t, id, 1)
		if len(fs) != 1 || fs[0].Outcome != scheduler.Started || fs[0].RunID == "" {
			t.Fatalf("fires of %s = %+v", id, fs)
		}
		r.b.Events.WaitFinal(t, fs[0].RunID, 20*time.Second)
	}
	// Claiming again fires nothing.
	if n, _ := r.svc.Claim(t.Context()); n != 0 {
		t.Fatalf("second claim fired %d", n)
	}
	r.b.CheckLedger()
}

func TestCatchUpOverlapAndBalance(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{Pace: 3 * time.Millisecond})
	r.b.Fund(alice, billing.BucketCredit, billing.Micro)
	hourly := r.make(t, "@every 1h research AAPL standard")

	// Down for 5h20m: the latest time (20 min late) runs, the 4 before are missed.
	r.b.Clock.Advance(5*time.Hour + 20*time.Minute)
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("claim after downtime = %d, %v", n, err)
	}
	fs := r.settled(t, hourly.ID, 5)
	if fs[0].Outcome != scheduler.Started || fs[1].Outcome != scheduler.Missed || fs[4].Outcome != scheduler.Missed {
		t.Fatalf("fires = %+v", fs)
	}
	// The run is still going when the next hour comes: that time is skipped.
	r.b.Clock.Advance(time.Hour)
	if n, _ := r.svc.Claim(t.Context()); n != 1 {
		t.Fatal("next hour not claimed")
	}
	fs = r.settled(t, hourly.ID, 6)
	if fs[0].Outcome != scheduler.SkippedOverlap {
		t.Fatalf("overlapping fire = %+v", fs[0])
	}
	// The previous run may still be queued or already running when the
	// next time comes; either way it is named in the notice.
	overlapNotice := "the previous run " + fs[1].RunID + " is still "
	r.b.Events.WaitFinal(t, fs[1].RunID, 20*time.Second)

	// A daily time found 5 h late is outside the catch-up window: recorded as missed, not run.
	daily := r.make(t, "daily 09:00 research MSFT")
	r.b.Clock.Advance(daily.NextRunAt.Add(5 * time.Hour).Sub(r.b.Clock.Now()))
	if _, err := r.svc.SetStatus(t.Context(), hourly.ID, alice, scheduler.Paused); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.svc.Claim(t.Context()); n != 0 {
		t.Fatal("a time 5h late was run")
	}
	if fs := r.settled(t, daily.ID, 1); fs[0].Outcome != scheduler.Missed {
		t.Fatalf("late daily fire = %+v", fs)
	}
	if _, err := r.svc.SetStatus(t.Context(), hourly.ID, alice, scheduler.Active); err != nil {
		t.Fatal(err)
	}

	// Too little balance: skipped with a notice.
	acc, _ := r.b.Store.AccountOf(t.Context(), alice)
	bal, _ := r.b.Store.Balances(t.Context(), acc)
	if _, err := r.b.Store.Post(t.Context(), billing.PostRequest{AccountID: acc, Bucket: billing.BucketCredit, Kind: billing.KindAdjustment,
		Amount: -bal[billing.BucketCredit].Available, Key: "drain"}); err != nil {
		t.Fatal(err)
	}
	r.b.Clock.Advance(time.Hour)
	if n, _ := r.svc.Claim(t.Context()); n != 1 {
		t.Fatal("not claimed")
	}
	all := r.settled(t, hourly.ID, 7)
	if all[0].Outcome != scheduler.SkippedBalance {
		t.Fatalf("fire without balance = %+v", all[0])
	}
	r.mu.Lock()
	notices := strings.Join(r.notices, "\n")
	r.mu.Unlock()
	if !strings.Contains(notices, overlapNotice) || !strings.Contains(notices, "top up") {
		t.Fatalf("notices = %s", notices)
	}
	r.b.CheckSettled()
}

// TestScheduleThroughConsole: made, confirmed and fired through the
// conversation and the console adapter; the run's result posts to the chat.
func TestScheduleThroughConsole(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{})
	r.b.Fund(alice, billing.BucketCredit, billing.Micro)
	out := &testbed.Screen{}
	ob := bots.NewOutbox(nil)
	conv := &bots.Conversation{Engine: r.b.Engine, Ledger: r.b.Store, Runs: r.b.Store, Outbox: ob, Schedules: r.svc}
	r.b.Engine.Sink, r.svc.Notify = conv, conv.Notify
	con := &console.Console{Conv: conv, User: alice, Out: out}
	ob.Register(console.Platform, con, bots.Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ob.Run(ctx)

	con.Handle(t.Context(), `/schedule weekdays 16:30 research NVDA AMD tz:America/New_York`)
	screen := out.String()
	for _, want := range []string{"Next five", "Per month", "EST", "Policies", "[1] Confirm schedule"} {
		if !strings.Contains(screen, want) {
			t.Fatalf("schedule quote lacks %q:\n%s", want, screen)
		}
	}
	con.Handle(t.Context(), "1")
	if !strings.Contains(out.String(), "Scheduled research on NVDA, AMD") {
		t.Fatalf("confirm:\n%s", out.String())
	}
	con.Handle(t.Context(), "/schedule list")
	if !strings.Contains(out.String(), "active: research on NVDA, AMD") {
		t.Fatalf("list:\n%s", out.String())
	}
	list, _, _ := r.svc.List(t.Context(), alice)
	r.b.Clock.Advance(list[0].NextRunAt.Add(time.Minute).Sub(r.b.Clock.Now())) // a minute after its next time
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("claim = %d, %v", n, err)
	}
	out.WaitFor(t, "Receipt: http", 1) // the final message's last line
	for _, want := range []string{"Research NVDA, AMD: succeeded", "Not financial advice"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("scheduled result lacks %q", want)
		}
	}
	r.b.CheckLedger()
}
