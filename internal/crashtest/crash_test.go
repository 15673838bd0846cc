// Package crashtest kills processes that are running research runs and
// checks that the runs come back: a child process (this test binary re-run
// with FORGE_CRASH_CHILD set) executes a run on a shared store and is killed
// with SIGKILL mid-stage; a fresh instance (a restart) or one that was
// already running (PostgreSQL) resumes the run from its last finished stage,
// settles it, and the final message goes out exactly once.
package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// Recovery is the bound the issue sets: a crashed run resumes within 30 s.
const Recovery = 30 * time.Second

const (
	envChild = "FORGE_CRASH_CHILD" // the store spec the child opens
	envLLM   = "FORGE_CRASH_LLM"   // the parent's fake LLM API
	envHang  = "FORGE_CRASH_HANG"  // set: the child hangs on a final event (dies before handing it over)
	// envQueue: the child is a process with a queue of its own (the demo,
	// `forgebot research`) that confirms a run to this platform and dies
	// before its worker starts it.
	envQueue = "FORGE_CRASH_QUEUE"
)

var price = billing.Price{InputPerM: 1 * billing.Micro, OutputPerM: 4 * billing.Micro}

func routes(url string) []llm.Route {
	return []llm.Route{{ID: "api-a", Kind: billing.RouteOfficial, Model: "gpt-test", BaseURL: url, APIKey: "sk-test-aaaa1111", Price: price, Enabled: true}}
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(envChild); spec != "" {
		child(spec, os.Getenv(envLLM))
		return
	}
	os.Exit(m.Run())
}

// line is what the child prints per event.
type line struct {
	Run   string `json:"run"`
	Done  int    `json:"done"`
	State string `json:"state"`
}

// child executes runs on the parent's store until it is killed, printing
// every event as a JSON line.
func child(spec, llmURL string) {
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	hang := os.Getenv(envHang) != ""
	sink := research.SinkFunc(func(ev research.Event) {
		mu.Lock()
		_ = enc.Encode(line{Run: ev.Run.ID, Done: ev.Run.Done, State: string(ev.Run.State)})
		mu.Unlock()
		if hang && ev.Final {
			select {} // settled, final not handed over: killed here
		}
	})
	if platform := os.Getenv(envQueue); platform != "" {
		queueAndWait(spec, llmURL, platform, enc)
	}
	if _, err := testbed.Attach(spec, testbed.Options{RoutesFor: routes}, llmURL, sink); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	select {} // until SIGKILL
}

// queueAndWait is a demo or `forgebot research` process: its own River
// queue, its watcher running, no worker free (it is killed before one takes
// the job). It confirms alice's run to platform, prints it, and waits.
func queueAndWait(spec, llmURL, platform string, enc *json.Encoder) {
	in, err := testbed.Attach(spec, testbed.Options{RoutesFor: routes, LocalQueue: true, NoWorkers: true}, llmURL, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	q, err := in.Engine.Quote(ctx, research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL", "NVDA"},
		Depth: research.Standard, Model: "gpt-test", Owner: alice, Dest: research.Destination{Platform: platform, ChatID: "c1", MessageID: "m1"}})
	if err == nil {
		var r research.Run
		if r, _, err = in.Engine.Confirm(ctx, q.ID, alice, nil); err == nil {
			_ = enc.Encode(line{Run: r.ID, State: string(r.State)})
			select {} // until SIGKILL
		}
	}
	fmt.Fprintln(os.Stderr, "child:", err)
	os.Exit(2)
}

var alice = billing.Identity{Platform: "chat", ExternalID: "alice"}

// platform records what the outbox sent to one fake chat platform.
type platform struct {
	mu    sync.Mutex
	views map[string][]bots.View // by message id
	final chan struct{}          // gets a value per final view
}

func (p *platform) Send(_ context.Context, d research.Destination, v bots.View) (string, error) {
	return "new", p.Edit(context.Background(), research.Destination{MessageID: "new"}, v)
}

func (p *platform) Edit(_ context.Context, d research.Destination, v bots.View) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.views == nil {
		p.views = map[string][]bots.View{}
	}
	p.views[d.MessageID] = append(p.views[d.MessageID], v)
	if v.Final {
		select {
		case p.final <- struct{}{}:
		default:
		}
	}
	return nil
}

func (p *platform) finals(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.views[msg] {
		if v.Final {
			n++
		}
	}
	return n
}

// fwd is a sink set after the bed exists (the conversation needs its engine).
type fwd struct {
	mu sync.Mutex
	s  research.Sink
}

func (f *fwd) Publish(ev research.Event) {
	f.mu.Lock()
	s := f.s
	f.mu.Unlock()
	if s != nil {
		s.Publish(ev)
	}
}

// crash runs one run in a child process, kills it after its first model
// stage, and returns how long after the kill the run resumed. With live, a
// second instance is already running when the child dies; otherwise one is
// started after the kill (a restart).
// scenario is one way a run's process dies.
type scenario struct {
	pg     bool // PostgreSQL, else SQLite
	live   bool // a second instance is running when the child dies
	cancel bool // Cancel is pressed while the run's process is dead
	cli    bool // the run is a `forgebot research` run: nobody can deliver it
	ended  bool // the child dies after settling the run, before its final went out
}

func crash(t testing.TB, sc scenario) time.Duration {
	pg, live, cancel := sc.pg, sc.live, sc.cancel
	gate := make(chan struct{})
	sink := &fwd{}
	opts := testbed.Options{Postgres: pg, NoWorkers: true, RoutesFor: routes, Sink: sink}
	platformName := "chat"
	if sc.cli {
		// As in `forgebot serve`: it cannot deliver to a dead terminal.
		platformName = "cli"
		opts.Deliverable = func(d research.Destination) bool { return d.Platform == "chat" }
		opts.Bound = func(d research.Destination) bool { return d.Platform == "cli" }
	}
	b := testbed.New(t, opts)
	defer close(gate)
	chat := &platform{final: make(chan struct{}, 16)}
	ob := bots.NewOutbox(nil)
	ob.Store = b.Store.(bots.MessageStore)
	ob.Register("chat", chat, bots.Limits{})
	octx, stop := context.WithCancel(context.Background())
	defer stop()
	go ob.Run(octx)
	sink.mu.Lock()
	sink.s = &bots.Conversation{Engine: b.Engine, Ledger: b.Store, Runs: b.Store, Outbox: ob}
	sink.mu.Unlock()

	b.Fund(alice, billing.BucketCredit, billing.Micro)
	if sc.ended {
		b.LLM.Enqueue(llmtest.Stream("AAPL ", "looks firm.").WithUsage(1000, 10),
			llmtest.Stream("NVDA ", "is strong.").WithUsage(1100, 11), llmtest.Stream("Both ", "hold up.").WithUsage(1200, 12))
	} else {
		b.LLM.Enqueue(llmtest.Stream("AAPL ", "looks firm.").WithUsage(1000, 10),
			llmtest.Stream("NVDA ", "never finishes here.").WithGate(gate)) // the child dies in this one
	}
	q, err := b.Engine.Quote(t.Context(), research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL", "NVDA"},
		Depth: research.Standard, Model: "gpt-test", Owner: alice, Dest: research.Destination{Platform: platformName, ChatID: "c1", MessageID: "m1"}})
	if err != nil {
		t.Fatal(err)
	}
	run, _, err := b.Engine.Confirm(t.Context(), q.ID, alice, nil)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+b.Spec(), envLLM+"="+b.LLM.URL())
	if sc.ended {
		cmd.Env = append(cmd.Env, envHang+"=1")
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	// Wait until the child is in its second model call (the first one's
	// stage is stored), or has settled the run, then kill it there.
	settled := make(chan struct{})
	go func() {
		dec := json.NewDecoder(out)
		for {
			var l line
			if dec.Decode(&l) != nil {
				return
			}
			if l.Run == run.ID && research.State(l.State).Terminal() {
				close(settled)
				_, _ = io.Copy(io.Discard, out)
				return
			}
		}
	}()
	reached := b.LLM.Received(2)
	if sc.ended {
		reached = settled
	}
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		t.Fatal("the child never got where it dies")
	}
	if live {
		b.InstanceWithWorkers()
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	dead := time.Now()
	if sc.ended {
		b.InstanceWithWorkers() // the restart
		select {
		case <-chat.final:
		case <-time.After(Recovery):
			t.Fatalf("the final of a run settled by a dead process was not delivered within %s", Recovery)
		}
		took := time.Since(dead)
		flush, done := context.WithTimeout(t.Context(), 30*time.Second)
		defer done()
		if err := ob.Flush(flush); err != nil {
			t.Fatal(err)
		}
		if n := chat.finals("m1"); n != 1 {
			t.Fatalf("the final message was delivered %d times", n)
		}
		b.CheckSettled()
		return took
	}
	b.LLM.Enqueue(llmtest.Stream("NVDA ", "is strong.").WithUsage(1100, 11), llmtest.Stream("Both ", "hold up.").WithUsage(1200, 12))
	if cancel {
		// Pressed during the stall, on an instance that is not running it.
		if _, err := b.Engine.Cancel(t.Context(), run.ID, alice); err != nil {
			t.Fatal(err)
		}
	}
	if !live {
		b.InstanceWithWorkers() // the restart
	}
	if sc.cli {
		final := b.Events.WaitFinal(t, run.ID, Recovery)
		took := time.Since(dead)
		if final.Run.State != research.Failed || final.Run.Captured != 0 || took > Recovery {
			t.Fatalf("run ended %s, captured %s, %s after the kill", final.Run.State, final.Run.Captured, took)
		}
		b.CheckSettled()
		return took
	}
	if cancel {
		final := b.Events.WaitFinal(t, run.ID, Recovery)
		took := time.Since(dead)
		if final.Run.State != research.Cancelled || final.Run.Captured > final.Run.Hold || took > Recovery {
			t.Fatalf("run ended %s, captured %s, %s after the kill", final.Run.State, final.Run.Captured, took)
		}
		select {
		case <-chat.final:
		case <-time.After(30 * time.Second):
			t.Fatal("no final message")
		}
		b.CheckSettled()
		return took
	}
	b.Events.Wait(t, run.ID, Recovery, func(ev research.Event) bool { return strings.Contains(ev.Note, "resuming from stage 4") })
	took := time.Since(dead)
	if took > Recovery {
		t.Fatalf("resumed %s after the kill, over %s", took, Recovery)
	}
	final := b.Events.WaitFinal(t, run.ID, 60*time.Second)

	if final.Run.State != research.Succeeded || final.Report == nil {
		t.Fatalf("run ended %s (%s)", final.Run.State, final.Run.Error)
	}
	// Completed stages are paid once: AAPL's analysis was not asked again,
	// and the charge is the three finished calls' usage.
	if want := price.Cost(1000+1100+1200, 10+11+12); final.Run.Captured != want {
		t.Fatalf("captured %s, want %s", final.Run.Captured, want)
	}
	aapl := 0
	for _, r := range b.LLM.Requests() {
		if slices.ContainsFunc(r.Messages, func(m llmtest.Message) bool { return strings.Contains(m.Content, `"focus": "AAPL"`) }) {
			aapl++
		}
	}
	if n := len(b.LLM.Requests()); n != 4 || aapl > 1 {
		t.Fatalf("%d model requests (%d for AAPL's analysis), want 4 with AAPL once", n, aapl)
	}
	select {
	case <-chat.final:
	case <-time.After(30 * time.Second):
		t.Fatal("no final message")
	}
	flush, done := context.WithTimeout(t.Context(), 30*time.Second)
	defer done()
	if err := ob.Flush(flush); err != nil {
		t.Fatal(err)
	}
	if n := chat.finals("m1"); n != 1 {
		t.Fatalf("the final message was delivered %d times", n)
	}
	b.CheckSettled()
	return took
}

func TestCrashRestartSQLite(t *testing.T) {
	t.Parallel()
	t.Logf("resumed %s after SIGKILL", crash(t, scenario{}))
}

func TestCrashRestartPostgres(t *testing.T) {
	t.Parallel()
	t.Logf("resumed %s after SIGKILL", crash(t, scenario{pg: true}))
}

func TestCrashLiveInstancePostgres(t *testing.T) {
	t.Parallel()
	t.Logf("resumed %s after SIGKILL", crash(t, scenario{pg: true, live: true}))
}

// TestCancelDuringStall: Cancel pressed while the run's process is dead (and
// before the restart) settles the run within the bound, not after the
// reaper's hour.
func TestCancelDuringStall(t *testing.T) {
	t.Parallel()
	t.Logf("settled %s after SIGKILL", crash(t, scenario{cancel: true}))
}

// TestCrashedCLIRunSettled: a `forgebot research` process dies mid-run; the
// next forgebot process (here one that serves a chat platform, as serve does)
// cannot deliver the report to a terminal that is gone: it settles the run
// within the bound, charging nothing.
func TestCrashedCLIRunSettled(t *testing.T) {
	t.Parallel()
	t.Logf("settled %s after SIGKILL", crash(t, scenario{cli: true}))
}

// BenchmarkCrashResume measures, ten times per case, the seconds from the
// SIGKILL of the process running a run to the run resumed: restarted on the
// same store, or taken by a second instance already running. It reports the
// median and the maximum (run with -benchtime 1x; each kill costs ~12 s).
func BenchmarkCrashResume(b *testing.B) {
	for _, c := range []struct {
		name string
		sc   scenario
	}{
		{"restart-sqlite", scenario{}},
		{"restart-postgres", scenario{pg: true}},
		{"live-instance-postgres", scenario{pg: true, live: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				var took []float64
				for range 10 {
					took = append(took, crash(b, c.sc).Seconds())
				}
				slices.Sort(took)
				b.ReportMetric((took[4]+took[5])/2, "s-median")
				b.ReportMetric(took[9], "s-max")
				b.ReportMetric(took[0], "s-min")
			}
		})
	}
}

// TestCrashAfterSettleDeliversFinal: the child settles the run and dies
// before handing its final message over; the next process publishes it
// again from the stored run, and the message shows it once.
func TestCrashAfterSettleDeliversFinal(t *testing.T) {
	t.Parallel()
	t.Logf("final delivered %s after SIGKILL", crash(t, scenario{ended: true}))
}

// crashQueued: a demo (or, with cli, a `forgebot research`) process confirms
// a run and is SIGKILLed before any worker started it, so the run is queued in
// a River queue nobody will ever work again. The next forgebot process on the
// store finds it within the bound, by the lease the dead process took when it
// queued the run and renewed until it died: a new demo resumes it on its own
// console (the whole report, delivered once); serve, which cannot deliver to
// a dead terminal, settles it at $0. It returns how long after the kill.
func crashQueued(t testing.TB, pg, cli bool) time.Duration {
	sink := &fwd{}
	platformName := "chat" // the console of a demo, served by the next demo
	opts := testbed.Options{Postgres: pg, NoWorkers: true, RoutesFor: routes, Sink: sink, LocalQueue: true}
	if cli {
		platformName = "cli"
		opts.LocalQueue = false // serve: the shared queue, no terminal
		opts.Deliverable = func(d research.Destination) bool { return d.Platform == "chat" }
		opts.Bound = func(d research.Destination) bool { return d.Platform == "cli" }
	}
	b := testbed.New(t, opts)
	chat := &platform{final: make(chan struct{}, 16)}
	ob := bots.NewOutbox(nil)
	ob.Store = b.Store.(bots.MessageStore)
	ob.Register("chat", chat, bots.Limits{})
	octx, stop := context.WithCancel(context.Background())
	defer stop()
	go ob.Run(octx)
	sink.mu.Lock()
	sink.s = &bots.Conversation{Engine: b.Engine, Ledger: b.Store, Runs: b.Store, Outbox: ob}
	sink.mu.Unlock()
	b.Fund(alice, billing.BucketCredit, billing.Micro)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+b.Spec(), envLLM+"="+b.LLM.URL(), envQueue+"="+platformName)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	queued := make(chan line, 1)
	go func() {
		var l line
		if json.NewDecoder(out).Decode(&l) == nil {
			queued <- l
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	var l line
	select {
	case l = <-queued:
	case <-time.After(60 * time.Second):
		t.Fatal("the child never confirmed its run")
	}
	if r, err := b.Store.Run(t.Context(), l.Run); err != nil || r.State != research.Queued || r.Hold == 0 {
		t.Fatalf("before the kill the run is %s with hold %s (%v), want queued and held", r.State, r.Hold, err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	dead := time.Now()
	b.LLM.Enqueue(llmtest.Stream("AAPL ", "looks firm.").WithUsage(1000, 10),
		llmtest.Stream("NVDA ", "is strong.").WithUsage(1100, 11), llmtest.Stream("Both ", "hold up.").WithUsage(1200, 12))
	b.InstanceWithWorkers() // the next process on the store: a demo, or serve
	final := b.Events.WaitFinal(t, l.Run, Recovery)
	took := time.Since(dead)
	if took > Recovery {
		t.Fatalf("the run ended %s after the kill, over %s", took, Recovery)
	}
	if cli {
		if final.Run.State != research.Failed || final.Run.Captured != 0 || len(b.LLM.Requests()) != 0 {
			t.Fatalf("run ended %s, captured %s, %d model calls; want failed at $0 with none", final.Run.State, final.Run.Captured, len(b.LLM.Requests()))
		}
		b.CheckSettled()
		return took
	}
	if final.Run.State != research.Succeeded || final.Report == nil {
		t.Fatalf("run ended %s (%s), want succeeded with its report", final.Run.State, final.Run.Error)
	}
	if want := price.Cost(1000+1100+1200, 10+11+12); final.Run.Captured != want {
		t.Fatalf("captured %s, want %s", final.Run.Captured, want)
	}
	select {
	case <-chat.final:
	case <-time.After(30 * time.Second):
		t.Fatal("no final message")
	}
	flush, done := context.WithTimeout(t.Context(), 30*time.Second)
	defer done()
	if err := ob.Flush(flush); err != nil {
		t.Fatal(err)
	}
	if n := chat.finals("m1"); n != 1 {
		t.Fatalf("the final message was delivered %d times", n)
	}
	b.CheckSettled()
	return took
}

// TestCrashedQueuedDemoRunResumed: a demo dies with a confirmed run still
// queued in its own queue; the next demo on the store (SQLite, the embedded
// default) runs it within the bound and delivers its report once.
func TestCrashedQueuedDemoRunResumed(t *testing.T) {
	t.Parallel()
	t.Logf("resumed %s after SIGKILL", crashQueued(t, false, false))
}

// TestCrashedQueuedCLIRunSettled: a `forgebot research` process dies with
// its run still queued; a `forgebot serve` on the same PostgreSQL settles it
// within the bound, charging nothing.
func TestCrashedQueuedCLIRunSettled(t *testing.T) {
	t.Parallel()
	t.Logf("settled %s after SIGKILL", crashQueued(t, true, true))
}
