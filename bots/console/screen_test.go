package console

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
)

var you = billing.Identity{Platform: Platform, ExternalID: "you"}

// rig is a console on a real conversation, engine and store.
type rig struct {
	b      *testbed.Bed
	con    *Console
	screen *testbed.Screen
}

func newRig(t *testing.T, opts testbed.Options, terminal bool) *rig {
	b := testbed.New(t, opts)
	ob := bots.NewOutbox(nil)
	conv := &bots.Conversation{Engine: b.Engine, Ledger: b.Store, Runs: b.Store, Outbox: ob}
	b.Engine.Sink = research.SinkFunc(func(ev research.Event) { conv.Publish(ev); b.Events.Publish(ev) })
	scr := &testbed.Screen{}
	con := &Console{Conv: conv, User: you, Out: scr, Terminal: terminal}
	ob.Register(Platform, con, Limits)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go ob.Run(ctx)
	b.Fund(you, billing.BucketCredit, 5*billing.Micro)
	return &rig{b: b, con: con, screen: scr}
}

// runIDs lists the account's runs, newest first.
func (r *rig) runs(t *testing.T) []research.Run {
	t.Helper()
	acc, err := r.b.Store.EnsureAccount(t.Context(), you)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := r.b.Store.RunsOf(t.Context(), acc, 10)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestProgressDoesNotRebindChoices: with a deep run streaming, a quote asked
// for meanwhile keeps its numbers: progress updates arriving after it do not
// rebind 1, which confirms the quote and does not cancel the run. The run's
// own keys (c1) act on it.
func TestProgressDoesNotRebindChoices(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{Pace: 3 * time.Millisecond}, false)
	r.con.Handle(t.Context(), "/research AAPL MSFT NVDA deep")
	r.screen.WaitFor(t, "[1] Confirm", 1)
	r.con.Handle(t.Context(), "1")
	r.screen.WaitFor(t, "… run 1:", 1)
	r.con.Handle(t.Context(), "/research AMD quick")
	r.screen.WaitFor(t, "[1] Confirm", 2)
	// The deep run moves on after the quote was shown.
	n := strings.Count(r.screen.String(), "… run 1:")
	r.screen.WaitFor(t, "… run 1:", n+1)
	r.con.Handle(t.Context(), "1")
	r.screen.WaitFor(t, "… run 2:", 1)
	rs := r.runs(t)
	if len(rs) != 2 || rs[0].Request.Depth != research.Quick || rs[1].State == research.Cancelled || rs[1].CancelRequested {
		t.Fatalf("runs after pressing 1 on the second quote: %+v", rs)
	}
	deep := rs[1].ID
	r.con.Handle(t.Context(), "c1")
	if ev := r.b.Events.WaitFinal(t, deep, 30*time.Second); ev.Run.State != research.Cancelled {
		t.Fatalf("c1 left the deep run %s", ev.Run.State)
	}
	// A key of a run that ended, or of no run, is answered as such, not
	// as a command without its slash.
	r.screen.WaitFor(t, ": cancelled ==", 1)
	r.con.Handle(t.Context(), "p1")
	r.screen.WaitFor(t, "Run 1 offers no p1 now", 1)
	r.con.Handle(t.Context(), "c7")
	r.screen.WaitFor(t, "No run 7 in this session", 1)
	if strings.Contains(r.screen.String(), "Commands start with /") {
		t.Errorf("a run key was taken for a command:\n%s", r.screen.String())
	}
	r.b.Events.WaitFinal(t, rs[0].ID, 30*time.Second)
	r.b.CheckLedger()
}

// TestTerminalProgressRedrawsInPlace: on a terminal a run's progress is one
// line, redrawn above the prompt; without one, plain lines per stage change
// and no cursor controls.
func TestTerminalProgressRedrawsInPlace(t *testing.T) {
	t.Parallel()
	progress := func(stage int, note string) bots.View {
		return bots.View{Kind: bots.KindProgress, Title: "Research AAPL, NVDA, MSFT, AMZN, GOOGL (standard): running",
			Text:    strings.Repeat("x", 3) + " stage " + string(rune('0'+stage)) + "/3: writing\n" + note,
			Buttons: [][]bots.Button{{{Label: "Cancel", Data: "r:run9:cancel"}, {Label: "Pause", Data: "r:run9:pause"}}}}
	}
	for _, tty := range []bool{true, false} {
		scr := &testbed.Screen{}
		c := &Console{Out: scr, Terminal: tty}
		c.prompt()
		id, _ := c.Send(t.Context(), research.Destination{}, progress(1, ""))
		for i := range 8 {
			_ = c.Edit(t.Context(), research.Destination{MessageID: id}, progress(1+i/3, "writing"))
		}
		out := scr.String()
		lines := strings.Count(out, "… run 1:")
		if tty {
			if lines != 9 || strings.Count(out, "\n") != 1 || strings.Count(out, "\0337\033[1A\r\033[K") != 8 {
				t.Errorf("terminal: %d progress lines drawn, %d newlines:\n%q", lines, strings.Count(out, "\n"), out)
			}
			// The run's keys fit on the line, whatever the title's length.
			if last := out[strings.LastIndex(out, "… run 1:"):]; !strings.Contains(last, "| c1 Cancel  p1 Pause\0338") {
				t.Errorf("terminal: the run's keys are cut off the line: %q", last)
			}
			if !strings.HasSuffix(out, "\0338") || strings.Count(out, "> ") != 2 {
				t.Errorf("terminal: the prompt is not kept below the line:\n%q", out)
			}
		} else {
			if strings.Contains(out, "\033") || strings.Contains(out, "\r") {
				t.Errorf("cursor controls without a terminal:\n%q", out)
			}
			if lines != 4 { // stage 1, stage 1 writing, stage 2 writing, stage 3 writing
				t.Errorf("plain: %d progress lines:\n%s", lines, out)
			}
		}
		if c.runKeys["c1"] != "r:run9:cancel" || c.runKeys["p1"] != "r:run9:pause" || len(c.choices) != 0 {
			t.Errorf("progress keys %v, numbered choices %v", c.runKeys, c.choices)
		}
		_ = c.Edit(t.Context(), research.Destination{MessageID: id}, bots.View{Kind: bots.KindFinal, Final: true, Title: "Research AAPL: succeeded"})
		if len(c.runKeys) != 0 {
			t.Errorf("keys of an ended run stay: %v", c.runKeys)
		}
		if out := scr.String(); !strings.HasSuffix(out, "> ") || strings.HasSuffix(out, "> > ") {
			t.Errorf("tty=%v: no single prompt after the final:\n%q", tty, out)
		}
	}
}

// TestOnePromptAfterEveryReply: each reply, and a final arriving while the
// prompt waits, is followed by exactly one prompt; a line over 64 KiB is
// refused and the console goes on.
func TestOnePromptAfterEveryReply(t *testing.T) {
	t.Parallel()
	r := newRig(t, testbed.Options{}, false)
	in, typist := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- r.con.Run(t.Context(), in) }()
	typ := func(s string) {
		if _, err := io.WriteString(typist, s+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	r.screen.WaitFor(t, "> ", 1)
	typ("/balance")
	r.screen.WaitFor(t, "> ", 2)
	typ(strings.Repeat("A", 70*1024))
	r.screen.WaitFor(t, "too long", 1)
	r.screen.WaitFor(t, "> ", 3)
	typ("/research AAPL quick")
	r.screen.WaitFor(t, "[1] Confirm", 1)
	typ("1")
	title := r.screen.WaitFor(t, "AAPL: succeeded ==", 1)
	r.screen.WaitFor(t, "> ", strings.Count(title[:strings.Index(title, "AAPL: succeeded ==")], "> ")+1)
	typ("quit")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("console ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the console did not quit")
	}
	out := r.screen.String()
	between := func(from, to string) string {
		i := strings.Index(out, from)
		j := strings.Index(out[i+1:], to)
		if i < 0 || j < 0 {
			t.Fatalf("no %q then %q in:\n%s", from, to, out)
		}
		return out[i : i+1+j]
	}
	for _, seg := range [][2]string{{"Your balance", "too long"}, {"too long", "Quote:"}, {"Confirm $", "Confirmed"}} {
		if n := strings.Count(between(seg[0], seg[1]), "> "); n != 1 {
			t.Errorf("%d prompts between %q and %q:\n%s", n, seg[0], seg[1], out)
		}
	}
	if tail := out[strings.LastIndex(out, "AAPL: succeeded =="):]; strings.Count(tail, "> ") != 1 || !strings.HasSuffix(tail, "> ") {
		t.Errorf("after the final: %q", tail)
	}
	if strings.Contains(out, "> > ") {
		t.Errorf("two prompts in a row:\n%s", out)
	}
	if strings.Contains(out, strings.Repeat("A", 100)) {
		t.Fatalf("the long line was echoed")
	}
}
