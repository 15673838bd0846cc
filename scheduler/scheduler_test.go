package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/console"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
	"github.com/tokensforge/forgebot/research/market"
	"github.com/tokensforge/forgebot/scheduler"
)

func TestDSTFireTimes(t *testing.T) {
	t.Parallel()
	const ny, lh = "America/New_York", "Australia/Lord_Howe"
	for _, tc := range []struct {
		zone string
		spec string
		from time.Time
		want string
	}{
		// Spring forward (2026-03-08): 02:30 does not exist and is skipped that day.
		{ny, "30 2 * * *", time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC), "03-09 02:30 EDT, 03-10 02:30 EDT, 03-11 02:30 EDT"},
		{ny, "30 1 * * *", time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC), "03-08 01:30 EST, 03-09 01:30 EDT, 03-10 01:30 EDT"},
		// Fall back (2026-11-01): 01:30 happens twice and fires once, at the first.
		{ny, "30 1 * * *", time.Date(2026, 10, 31, 12, 0, 0, 0, time.UTC), "11-01 01:30 EDT, 11-02 01:30 EST, 11-03 01:30 EST"},
		{ny, "30 1 * * *", time.Date(2026, 11, 1, 5, 45, 0, 0, time.UTC), "11-02 01:30 EST, 11-03 01:30 EST, 11-04 01:30 EST"},
		{ny, "0 16 * * 1-5", time.Date(2026, 11, 27, 22, 0, 0, 0, time.UTC), "11-30 16:00 EST, 12-01 16:00 EST, 12-02 16:00 EST"},
		// Intervals are elapsed time: the fall-back hour is not skipped.
		{ny, "@every 1h", time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC), "11-01 01:00 EDT, 11-01 01:00 EST, 11-01 02:00 EST"},

		// Lord Howe Island moves its clocks by 30 minutes. Fall back
		// (2026-04-05): 02:00 +11 becomes 01:30 +1030, so 01:30-01:59 happen
		// twice; 01:45 fires once, at the first.
		{lh, "45 1 * * *", time.Date(2026, 4, 3, 12, 0, 0, 0, time.UTC), "04-04 01:45 +11, 04-05 01:45 +11, 04-06 01:45 +1030"},
		{lh, "*/30 1-2 * * *", time.Date(2026, 4, 4, 12, 0, 0, 0, time.UTC), "04-05 01:00 +11, 04-05 01:30 +11, 04-05 02:00 +1030, 04-05 02:30 +1030"},
		// A time just outside the repeated half hour is left alone.
		{lh, "15 1 * * *", time.Date(2026, 4, 3, 12, 0, 0, 0, time.UTC), "04-04 01:15 +11, 04-05 01:15 +11, 04-06 01:15 +1030"},
		// Spring forward (2026-10-04): 02:00 +1030 becomes 02:30 +11, so 02:15
		// does not exist and is skipped that day; 01:45 fires at 01:45, not
		// also at 02:45 (robfig/cron alone returns both).
		{lh, "15 2 * * *", time.Date(2026, 10, 2, 12, 0, 0, 0, time.UTC), "10-03 02:15 +1030, 10-05 02:15 +11, 10-06 02:15 +11"},
		{lh, "45 1 * * *", time.Date(2026, 10, 2, 12, 0, 0, 0, time.UTC), "10-03 01:45 +1030, 10-04 01:45 +1030, 10-05 01:45 +11"},
		{lh, "*/30 1-2 * * *", time.Date(2026, 10, 3, 12, 0, 0, 0, time.UTC), "10-04 01:00 +1030, 10-04 01:30 +1030, 10-04 02:30 +11, 10-05 01:00 +11"},
	} {
		sp, err := scheduler.ParseSpec(tc.spec, tc.zone)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, x := range sp.NextN(tc.from, strings.Count(tc.want, ",")+1) {
			got = append(got, x.In(sp.Zone).Format("01-02 15:04 MST"))
		}
		if strings.Join(got, ", ") != tc.want {
			t.Errorf("%s %q from %s = %v, want %s", tc.zone, tc.spec, tc.from, got, tc.want)
		}
	}
}

// TestDSTMinGap: a daily time is never refused as too frequent because a
// DST day repeats it, whatever the size of the zone's shift.
func TestDSTMinGap(t *testing.T) {
	t.Parallel()
	for _, tc := range [][2]string{{"45 1 * * *", "Australia/Lord_Howe"}, {"15 1 * * *", "Australia/Lord_Howe"}, {"30 1 * * *", "America/New_York"}} {
		sp, err := scheduler.ParseSpec(tc[0], tc[1])
		if err != nil {
			t.Fatal(err)
		}
		// Sampled over a year from before the April fall-back day.
		if gap := sp.MinGap(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)); gap < 23*time.Hour {
			t.Errorf("%s in %s: min gap %s, want at least 23h", tc[0], tc[1], gap)
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
			from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for _, x := range sp.NextN(from, 3) {
				if !x.After(from) {
					t.Fatalf("%q in %q: fire times not increasing: %s after %s", spec, zone, x, from)
				}
				from = x
			}
			sp.MinGap(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		}
		_, _ = scheduler.ParseCommand(scheduler.Tokenize(spec + " " + zone))
	})
}

func TestParseCommand(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`daily 09:00 scan us-megacaps`:                                  "0 9 * * *|scan|us-megacaps|quick||0",
		`weekdays 16:30 research NVDA AMD standard tz:America/New_York`: "30 16 * * 1-5|research|NVDA,AMD|standard|America/New_York|0",
		`"0 9 * * 1" research AAPL deep cap:0.50`:                       "0 9 * * 1|research|AAPL|deep||500000",
		`@daily scan crypto-majors CAP:1.25 tz:UTC`:                     "@daily|scan|crypto-majors|quick|UTC|1250000",
		`daily 09:00 ask "morning brief on my watchlist" cap:0.20`:      "0 9 * * *|ask||agent||200000",
	} {
		c, err := scheduler.ParseCommand(scheduler.Tokenize(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		what := strings.Join(c.Symbols, ",") + c.List
		if got := fmt.Sprintf("%s|%s|%s|%s|%s|%d", c.Spec, c.Kind, what, c.Depth, c.Zone, int64(c.Cap)); got != want {
			t.Errorf("%s = %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{"", "daily", "daily 25:00 scan x", "daily 9 scan x", "daily 09:00", "daily 09:00 dance NVDA", "@daily scan a b", "@daily research AAPL cap:-1", "@daily research AAPL cap:0", "@daily research AAPL cap:abc",
		`@daily ask "why?" ask:5`, "@daily research AAPL ask:on"} {
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
	private map[billing.Identity][]string // NotifyOwner's, by owner
}

func newRig(t *testing.T, opts testbed.Options) *rig {
	b := testbed.New(t, opts)
	r := &rig{b: b}
	r.svc = &scheduler.Service{Store: b.Store, Engine: b.Engine, Now: b.Clock.Now, Notify: func(_ context.Context, _ research.Destination, text string) {
		r.mu.Lock()
		r.notices = append(r.notices, text)
		r.mu.Unlock()
	}, NotifyOwner: func(_ context.Context, owner billing.Identity, text string) {
		r.mu.Lock()
		if r.private == nil {
			r.private = map[billing.Identity][]string{}
		}
		r.private[owner] = append(r.private[owner], text)
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
// runWait bounds how long a test waits for a fired run to end or a fire to settle. A quick run draws a chart,
// which under -race and with every package's tests sharing two cores can take tens of seconds; a run that
// hangs still fails the test.
const runWait = time.Minute

func (r *rig) settled(t *testing.T, id string, n int) []scheduler.Fire {
	t.Helper()
	deadline := time.Now().Add(runWait)
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
	// Proposals left unconfirmed are bounded too, with a message saying what to do.
	r.svc.MaxPerAccount, r.svc.MaxProposals = 10, 2
	for _, words := range []string{"daily 12:00 research NVDA", "daily 13:00 research AMD"} {
		if _, err := r.svc.Propose(t.Context(), alice, scheduler.Tokenize(words), dest); err != nil {
			t.Fatalf("%s: %v", words, err)
		}
	}
	if _, err := r.svc.Propose(t.Context(), alice, scheduler.Tokenize("daily 14:00 research TSLA"), dest); err == nil ||
		!strings.Contains(err.Error(), "2 schedule proposals waiting; confirm or cancel one first") {
		t.Fatalf("a third waiting proposal: %v", err)
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
		// Ten runs on two instances share the machine with the whole suite under -race: the wait is generous,
		// the assertion is that each time fired once.
		r.b.Events.WaitFinal(t, fs[0].RunID, runWait)
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
	r.b.Events.WaitFinal(t, fs[1].RunID, runWait)

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
	private := strings.Join(r.private[alice], "\n")
	r.mu.Unlock()
	if !strings.Contains(notices, overlapNotice) || !strings.Contains(notices, "top up") || !strings.Contains(notices, "too little balance") {
		t.Fatalf("notices = %s", notices)
	}
	// The schedule's chat (a group, maybe) gets no figures; the owner gets
	// them privately.
	if strings.Contains(notices, "$") || strings.Contains(all[0].Note, "$") {
		t.Fatalf("a balance figure reached the schedule's chat or its fire note: %s / %s", notices, all[0].Note)
	}
	if !strings.Contains(private, "your credit has $0.00 and the run needs up to $") {
		t.Fatalf("the owner's private notice = %q", private)
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
	// A paused schedule lists no next time (issue 15).
	list0, _, _ := r.svc.List(t.Context(), alice)
	con.Handle(t.Context(), "/schedule pause "+list0[0].ID)
	mark := len(out.String())
	con.Handle(t.Context(), "/schedule list")
	if paused := out.String()[mark:]; !strings.Contains(paused, "no next run while paused") || strings.Contains(paused, ", next ") {
		t.Fatalf("paused list:\n%s", paused)
	}
	con.Handle(t.Context(), "/schedule resume "+list0[0].ID)
	list, _, _ := r.svc.List(t.Context(), alice)
	r.b.Clock.Advance(list[0].NextRunAt.Add(time.Minute).Sub(r.b.Clock.Now())) // a minute after its next time
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("claim = %d, %v", n, err)
	}
	out.WaitFor(t, "Receipt: http", 1) // the final message's last line
	// The result says it came from the schedule (issue 15).
	for _, want := range []string{"Scheduled (" + list[0].ID + ") research NVDA, AMD: succeeded", "Not financial advice"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("scheduled result lacks %q:\n%s", want, out.String())
		}
	}
	r.b.CheckLedger()
}

// flakyMarket is market data that can go down, as a provider's outage would.
type flakyMarket struct {
	market.Provider
	down atomic.Bool
}

func (m *flakyMarket) History(ctx context.Context, symbol string, lookback time.Duration) (market.Series, error) {
	if m.down.Load() {
		return market.Series{}, fmt.Errorf("%w: test outage", market.ErrUnavailable)
	}
	return m.Provider.History(ctx, symbol, lookback)
}

// notices returns the notices posted so far.
func (r *rig) noticesSoFar() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.notices)
}

// noticesAtLeast waits until n notices were sent: a fire's outcome is stored before its notice goes out,
// and when another instance's worker fired it the notice comes from that goroutine.
func (r *rig) noticesAtLeast(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(runWait)
	for {
		ns := r.noticesSoFar()
		if len(ns) >= n || time.Now().After(deadline) {
			return ns
		}
		time.Sleep(5 * time.Millisecond) // polling the recorded notices, not synchronising goroutines
	}
}

// TestFireFailsOnLastAttempt: a fire whose quote fails for a reason other
// than a bad request (market data down) stays pending while the queue will
// retry it, and is recorded as failed, with a notice, on the last attempt.
func TestFireFailsOnLastAttempt(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{NoWorkers: true}) // the test plays the queue
	mkt := &flakyMarket{Provider: r.b.Market}
	r.b.Engine.Market = mkt // nothing else runs on this engine yet
	r.b.Fund(alice, billing.BucketCredit, billing.Micro)
	sc := r.make(t, "daily 09:00 research AAPL")
	mkt.down.Store(true)
	r.b.Clock.Advance(sc.NextRunAt.Add(time.Minute).Sub(r.b.Clock.Now()))
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("claim = %d, %v", n, err)
	}
	for attempt := 1; attempt < 3; attempt++ {
		if err := r.svc.Fire(t.Context(), sc.ID, sc.NextRunAt, attempt, 3); !errors.Is(err, market.ErrUnavailable) {
			t.Fatalf("attempt %d: %v, want the market error for a retry", attempt, err)
		}
		if f, err := r.b.Store.Fire(t.Context(), sc.ID, sc.NextRunAt); err != nil || f.Outcome != scheduler.Pending {
			t.Fatalf("after attempt %d: %+v, %v", attempt, f, err)
		}
	}
	if n := r.noticesSoFar(); len(n) != 0 {
		t.Fatalf("notices before the last attempt: %q", n)
	}
	if err := r.svc.Fire(t.Context(), sc.ID, sc.NextRunAt, 3, 3); err != nil {
		t.Fatalf("last attempt: %v", err)
	}
	f, err := r.b.Store.Fire(t.Context(), sc.ID, sc.NextRunAt)
	if err != nil || f.Outcome != scheduler.FailedOutcome || !strings.Contains(f.Note, "market data for AAPL is unavailable (ref ") || strings.Contains(f.Note, "test outage") || strings.Contains(f.Note, "demo") || f.RunID != "" {
		t.Fatalf("fire after the last attempt = %+v, %v", f, err)
	}
	notices := r.noticesAtLeast(t, 1)
	if len(notices) != 1 || !strings.Contains(notices[0], "Scheduled research on AAPL ("+sc.ID+") at ") ||
		!strings.Contains(notices[0], "failed: market data for AAPL is unavailable") || !strings.Contains(notices[0], "Nothing was charged") {
		t.Fatalf("notices = %q", notices)
	}
	// A late duplicate of the job changes nothing and says nothing more.
	if err := r.svc.Fire(t.Context(), sc.ID, sc.NextRunAt, 3, 3); err != nil {
		t.Fatal(err)
	}
	if n := r.noticesSoFar(); len(n) != 1 {
		t.Fatalf("notices after a duplicate job: %q", n)
	}
	if r.b.OpenHolds() != 0 {
		t.Fatal("a failed fire held money")
	}
	// The schedule goes on: with the market back, the next day runs.
	mkt.down.Store(false)
	next, err := r.b.Store.Schedule(t.Context(), sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	r.b.Clock.Advance(next.NextRunAt.Add(time.Minute).Sub(r.b.Clock.Now()))
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("next day's claim = %d, %v", n, err)
	}
	if err := r.svc.Fire(t.Context(), sc.ID, next.NextRunAt, 1, 3); err != nil {
		t.Fatal(err)
	}
	if f, err := r.b.Store.Fire(t.Context(), sc.ID, next.NextRunAt); err != nil || f.Outcome != scheduler.Started || f.RunID == "" {
		t.Fatalf("next day's fire = %+v, %v", f, err)
	}
}

// TestFireFailureThroughQueue: the same outage through River's real retries:
// the fire job's last attempt records the time as failed with one notice.
func TestFireFailureThroughQueue(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{NoWorkers: true})
	r.b.Fund(alice, billing.BucketCredit, billing.Micro)
	sc := r.make(t, "daily 09:00 research AAPL") // quoted on the working market data
	// The only workers are another instance's, whose market data is down.
	r.b.Market = &flakyMarket{Provider: r.b.Market}
	r.b.Market.(*flakyMarket).down.Store(true)
	store2, engine2 := r.b.InstanceWithWorkers()
	store2.SetFirer(&scheduler.Service{Store: store2, Engine: engine2, Now: r.b.Clock.Now, Notify: r.svc.Notify})
	r.b.Clock.Advance(sc.NextRunAt.Add(time.Minute).Sub(r.b.Clock.Now()))
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("claim = %d, %v", n, err)
	}
	fs := r.settled(t, sc.ID, 1)
	if fs[0].Outcome != scheduler.FailedOutcome || !strings.Contains(fs[0].Note, "market data for AAPL is unavailable") {
		t.Fatalf("fire = %+v", fs[0])
	}
	if n := r.noticesAtLeast(t, 1); len(n) != 1 || !strings.Contains(n[0], "failed: market data for AAPL is unavailable") {
		t.Fatalf("notices = %q", n)
	}
	r.b.CheckSettled()
}

// TestCostCapSkip: a fire whose quote holds more than the schedule's cap is
// skipped with a notice; nothing is held or run.
func TestCostCapSkip(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{})
	r.b.Fund(alice, billing.BucketCredit, billing.Micro)
	capped := r.make(t, "daily 09:00 research AAPL cap:0.000001")
	if capped.Cap != 1 {
		t.Fatalf("cap = %d micro-dollars, want 1", capped.Cap)
	}
	r.b.Clock.Advance(capped.NextRunAt.Add(time.Minute).Sub(r.b.Clock.Now()))
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("claim = %d, %v", n, err)
	}
	fs := r.settled(t, capped.ID, 1)
	if fs[0].Outcome != scheduler.SkippedCap || fs[0].RunID != "" || !strings.Contains(fs[0].Note, "above the cap of $0.000001") {
		t.Fatalf("capped fire = %+v", fs[0])
	}
	notices := r.noticesAtLeast(t, 1)
	if len(notices) != 1 || !strings.Contains(notices[0], "was skipped: its quote holds up to $") || !strings.Contains(notices[0], "above the cap of $0.000001") {
		t.Fatalf("notices = %q", notices)
	}
	if after, _ := r.b.Store.Schedule(t.Context(), capped.ID); after.LastRunID != "" {
		t.Fatalf("a capped fire started run %s", after.LastRunID)
	}
	r.b.CheckSettled()
}

// TestProposalPerMonth: the monthly cost counts every run in 30 days, for
// hourly schedules too (720 runs, not a sample's 400).
func TestProposalPerMonth(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{NoWorkers: true})
	r.b.Fund(alice, billing.BucketCredit, billing.Micro)
	for words, want := range map[string]int{"@every 1h research AAPL": 720, "daily 09:00 research AAPL": 30, `"0 9 * * 1" research AAPL`: 4} {
		p, err := r.svc.Propose(t.Context(), alice, scheduler.Tokenize(words), dest)
		if err != nil {
			t.Fatal(err)
		}
		// A weekly time may fall 4 or 5 times in 30 days, as may the edges.
		if p.PerMonth < want || p.PerMonth > want+1 || p.MonthHigh != p.Quote.CostHigh*billing.Money(p.PerMonth) {
			t.Errorf("%s: %d runs a month costing up to %s, want %d", words, p.PerMonth, p.MonthHigh, want)
		}
	}
}

// TestClaimerLeavesChatsItCannotReport: a claimer that cannot post to a
// schedule's platform leaves it due and untouched for one that can.
func TestClaimerLeavesChatsItCannotReport(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{})
	r.b.Fund(alice, billing.BucketCredit, billing.Micro)
	sc := r.make(t, "@every 1h research AAPL")
	r.b.Clock.Advance(time.Hour + time.Minute)
	other := &scheduler.Service{Store: r.b.Store, Engine: r.b.Engine, Now: r.b.Clock.Now,
		Reports: func(p string) bool { return p != dest.Platform }}
	if n, err := other.Claim(t.Context()); err != nil || n != 0 {
		t.Fatalf("a claimer without the schedule's platform fired %d, %v", n, err)
	}
	if fs, err := r.b.Store.Fires(t.Context(), sc.ID, 10); err != nil || len(fs) != 0 {
		t.Fatalf("fires recorded by the other claimer: %+v %v", fs, err)
	}
	if got, err := r.b.Store.Schedule(t.Context(), sc.ID); err != nil || !got.NextRunAt.Equal(sc.NextRunAt) {
		t.Fatalf("schedule moved: %v, %v", got.NextRunAt, err)
	}
	r.svc.Reports = func(p string) bool { return p == dest.Platform }
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("the claimer with the platform fired %d, %v", n, err)
	}
	fs := r.settled(t, sc.ID, 1)
	r.b.Events.WaitFinal(t, fs[0].RunID, runWait)
}

// TestSpendLimitSkip: a fire whose run would pass the owner's spend limit is
// skipped with a notice, holding nothing.
func TestSpendLimitSkip(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{})
	acc := r.b.Fund(alice, billing.BucketCredit, billing.Micro)
	sc := r.make(t, "daily 09:00 research AAPL")
	if err := r.b.Store.SetLimits(t.Context(), acc, billing.Limits{Daily: 1}, alice.String()); err != nil {
		t.Fatal(err)
	}
	r.b.Clock.Advance(sc.NextRunAt.Add(time.Minute).Sub(r.b.Clock.Now()))
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("claim = %d, %v", n, err)
	}
	fs := r.settled(t, sc.ID, 1)
	if fs[0].Outcome != scheduler.SkippedLimit || fs[0].RunID != "" {
		t.Fatalf("fire at the limit = %+v", fs[0])
	}
	// The chat hears of the skip without figures; the owner gets them privately.
	notices := r.noticesAtLeast(t, 1)
	if len(notices) != 1 || !strings.Contains(notices[0], "was skipped") || !strings.Contains(notices[0], "spend limit") ||
		!strings.Contains(notices[0], "/limit") || strings.Contains(notices[0], "$") {
		t.Fatalf("notices = %q: want the skip and /limit, no figures", notices)
	}
	r.mu.Lock()
	private := r.private[alice]
	r.mu.Unlock()
	if len(private) != 1 || !strings.Contains(private[0], "was skipped") || !strings.Contains(private[0], "daily limit") || !strings.Contains(private[0], "$") {
		t.Fatalf("owner's notices = %q: want the figures", private)
	}
	r.b.CheckSettled()
}

// TestFiresNotBehindRuns: fires have their own queue and workers. With the
// instance's only run worker busy on a run that streams until the test lets
// it go, a due schedule still fires: its quote is made and its run confirmed
// (and queued) while the first run is still going. With one shared pool the
// fire would wait for that run to end.
func TestFiresNotBehindRuns(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{MaxWorkers: 1, RoutesFor: func(url string) []llm.Route {
		return []llm.Route{{ID: "api-a", Kind: billing.RouteOfficial, Model: "gpt-test", BaseURL: url, APIKey: "sk-test-aaaa1111",
			Price: billing.Price{InputPerM: billing.Micro, OutputPerM: 4 * billing.Micro}, Enabled: true}}
	}})
	r.b.Fund(alice, billing.BucketCredit, 10*billing.Micro)
	gate := make(chan struct{})
	r.b.LLM.SetDefault(llmtest.Stream("a ", "b ").WithGate(gate))
	q, err := r.b.Engine.Quote(t.Context(), research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL"},
		Depth: research.Quick, Model: "gpt-test", Owner: alice, Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	busy, _, err := r.b.Engine.Confirm(t.Context(), q.ID, alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The run worker is taken: the run streams, held at its first chunk.
	select {
	case <-r.b.LLM.Received(1):
	case <-time.After(runWait):
		t.Fatal("the first run never called the model")
	}
	sc := r.make(t, "daily 09:00 research MSFT")
	r.b.Clock.Advance(sc.NextRunAt.Add(time.Minute).Sub(r.b.Clock.Now()))
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("claim = %d, %v", n, err)
	}
	fs := r.settled(t, sc.ID, 1)
	if fs[0].Outcome != scheduler.Started || fs[0].RunID == "" {
		t.Fatalf("fire while the run worker was busy = %+v", fs[0])
	}
	if cur, err := r.b.Store.Run(t.Context(), busy.ID); err != nil || cur.State.Terminal() {
		t.Fatalf("the busy run ended before the fire was checked: %s, %v", cur.State, err)
	}
	close(gate)
	r.b.Events.WaitFinal(t, busy.ID, runWait)
	r.b.Events.WaitFinal(t, fs[0].RunID, runWait)
	r.b.CheckSettled()
}

// TestScheduledAsk: /schedule daily 09:00 ask "..." cap:0.20 quotes an agent
// run with that cap; at its time it runs the question through the offline
// agent to an answer, without asking anyone to continue (a schedule's agent
// run wraps up at its cap unless ask:on), within the cap.
func TestScheduledAsk(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{})
	r.b.Fund(alice, billing.BucketCredit, billing.Micro)
	if _, err := r.b.Engine.WatchlistAdd(t.Context(), alice, "mine", []string{"NVDA", "AAPL"}); err != nil {
		t.Fatal(err)
	}
	p, err := r.svc.Propose(t.Context(), alice, scheduler.Tokenize(`daily 09:00 ask "morning brief on my watchlist" cap:0.20`), dest)
	if err != nil {
		t.Fatal(err)
	}
	if q := p.Quote; q.Agent == nil || q.Agent.Cap != 200_000 || q.Agent.AskAt != 0 || !strings.Contains(scheduler.Describe(p.Schedule), "morning brief") {
		t.Fatalf("proposal quote = %+v", q.Agent)
	}
	sc, err := r.svc.Confirm(t.Context(), p.Schedule.ID, alice)
	if err != nil {
		t.Fatal(err)
	}
	r.b.Clock.Advance(sc.NextRunAt.Add(time.Minute).Sub(r.b.Clock.Now()))
	if n, err := r.svc.Claim(t.Context()); err != nil || n != 1 {
		t.Fatalf("claim = %d, %v", n, err)
	}
	fs := r.settled(t, sc.ID, 1)
	if fs[0].Outcome != scheduler.Started || fs[0].RunID == "" {
		t.Fatalf("fire = %+v", fs[0])
	}
	final := r.b.Events.WaitFinal(t, fs[0].RunID, runWait)
	run := final.Run
	if run.State != research.Succeeded || run.Request.Question != "morning brief on my watchlist" || run.Request.ScheduleID != sc.ID ||
		run.Agent == nil || run.Agent.AskAt != 0 || run.Captured > 200_000 || final.Report == nil || !strings.Contains(final.Report.Overview, "NVDA") {
		t.Fatalf("scheduled ask ended %s (%s), captured %s, report %+v", run.State, run.Error, run.Captured, final.Report)
	}
	r.b.CheckSettled()
}
