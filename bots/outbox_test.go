package bots_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// wire is a Sender that records deliveries and answers from a script.
type wire struct {
	mu     sync.Mutex
	sent   []delivery
	script []error // answers to the next sends, in order; then nil
	got    chan delivery
}

type delivery struct {
	msg  string
	text string
	at   time.Time
}

func newWire(script ...error) *wire { return &wire{script: script, got: make(chan delivery, 100)} }

func (w *wire) Send(ctx context.Context, d research.Destination, v bots.View) (string, error) {
	return "", w.Edit(ctx, d, v)
}

func (w *wire) Edit(_ context.Context, d research.Destination, v bots.View) error {
	w.mu.Lock()
	var err error
	if len(w.script) > 0 {
		err, w.script = w.script[0], w.script[1:]
	}
	dl := delivery{msg: d.MessageID, text: v.Text, at: time.Now()}
	if err == nil {
		w.sent = append(w.sent, dl)
	}
	w.mu.Unlock()
	if err == nil {
		w.got <- dl
	}
	return err
}

func (w *wire) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-w.got:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("nothing delivered")
		return delivery{}
	}
}

func dest(msg string) research.Destination {
	return research.Destination{Platform: "p", ChatID: "c1", MessageID: msg}
}

func start(t *testing.T, ob *bots.Outbox) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go ob.Run(ctx)
}

func TestOutboxLatestWinsAndFinalFirst(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	w := newWire()
	ob.Register("p", w, bots.Limits{})
	for i := range 10 {
		ob.Submit(dest("a"), bots.View{Text: fmt.Sprint("progress ", i)})
	}
	ob.Submit(dest("b"), bots.View{Text: "b final", Final: true})
	ob.Submit(dest("b"), bots.View{Text: "b late progress"}) // never replaces a final
	start(t, ob)
	if d := w.next(t); d.text != "b final" {
		t.Fatalf("first delivery %q, want the final one", d.text)
	}
	if d := w.next(t); d.text != "progress 9" {
		t.Fatalf("second delivery %q, want only the latest progress", d.text)
	}
	if err := ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	sent, _, coalesced, _ := ob.Stats()
	if sent != 2 || coalesced != 9 {
		t.Fatalf("sent %d coalesced %d, want 2 and 9", sent, coalesced)
	}
}

func TestOutboxHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	w := newWire(&bots.RetryAfterError{Wait: 300 * time.Millisecond})
	ob.Register("p", w, bots.Limits{})
	start(t, ob)
	began := time.Now()
	ob.Submit(dest("a"), bots.View{Text: "one"})
	ob.Submit(dest("a"), bots.View{Text: "final", Final: true})
	d := w.next(t)
	if d.text != "final" || d.at.Sub(began) < 300*time.Millisecond {
		t.Fatalf("delivered %q after %s; want the final view after the 300ms retry-after", d.text, d.at.Sub(began))
	}
	if _, limited, _, _ := ob.Stats(); limited != 1 {
		t.Fatalf("limited = %d", limited)
	}
}

func TestOutboxRetriesFinalAfterErrors(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	w := newWire(errors.New("502 from the platform"))
	ob.Register("p", w, bots.Limits{})
	start(t, ob)
	ob.Submit(dest("a"), bots.View{Text: "final", Final: true})
	if d := w.next(t); d.text != "final" {
		t.Fatalf("delivered %q", d.text)
	}
}

func TestOutboxPerChatBudget(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	w := newWire()
	ob.Register("p", w, bots.Limits{PerChat: rate.Every(100 * time.Millisecond), PerChatBurst: 1})
	start(t, ob)
	for i := range 4 {
		ob.Submit(dest(fmt.Sprint("m", i)), bots.View{Text: "x"})
	}
	var times []time.Time
	for range 4 {
		times = append(times, w.next(t).at)
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < 90*time.Millisecond {
			t.Fatalf("sends %d and %d were %s apart, budget is one per 100ms", i-1, i, gap)
		}
	}
}

// postWire gives every Send a new message id.
type postWire struct {
	wire
	n int
}

func (w *postWire) Send(ctx context.Context, d research.Destination, v bots.View) (string, error) {
	w.mu.Lock()
	w.n++
	id := fmt.Sprint("posted-", w.n)
	w.mu.Unlock()
	d.MessageID = id
	return id, w.Edit(ctx, d, v)
}

func TestOutboxPostsOnceThenEdits(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	w := &postWire{}
	w.got = make(chan delivery, 100)
	ob.Register("p", w, bots.Limits{})
	start(t, ob)
	d := research.Destination{Platform: "p", ChatID: "c1", Ref: "run-1"}
	ob.Submit(d, bots.View{Text: "first"})
	if got := w.next(t); got.msg != "posted-1" {
		t.Fatalf("first delivery to %q", got.msg)
	}
	ob.Submit(d, bots.View{Text: "second"})
	ob.Submit(d, bots.View{Text: "done", Final: true})
	if got := w.next(t); got.msg != "posted-1" || got.text != "done" {
		t.Fatalf("later delivery %+v, want an edit of posted-1", got)
	}
}

// gatedWire holds each delivery until the test lets it answer, so views can
// arrive while a final one is being sent.
type gatedWire struct {
	*wire
	entered chan string
	answer  chan error
}

func (g *gatedWire) Send(ctx context.Context, d research.Destination, v bots.View) (string, error) {
	return "", g.Edit(ctx, d, v)
}

func (g *gatedWire) Edit(ctx context.Context, d research.Destination, v bots.View) error {
	g.entered <- v.Text
	if err := <-g.answer; err != nil {
		return err
	}
	return g.wire.Edit(ctx, d, v)
}

// TestOutboxFinalSurvivesLateProgress: progress that arrives while the final
// view is being sent is dropped, and a final told to wait is sent again, not
// replaced by that progress.
func TestOutboxFinalSurvivesLateProgress(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	g := &gatedWire{wire: newWire(), entered: make(chan string), answer: make(chan error)}
	ob.Register("p", g, bots.Limits{})
	start(t, ob)
	ob.Submit(dest("a"), bots.View{Text: "final", Final: true})
	if got := <-g.entered; got != "final" {
		t.Fatalf("first send %q", got)
	}
	ob.Submit(dest("a"), bots.View{Text: "late progress"})
	g.answer <- &bots.RetryAfterError{Wait: 10 * time.Millisecond}
	if got := <-g.entered; got != "final" {
		t.Fatalf("after the retry-after the outbox sent %q, want the final view again", got)
	}
	g.answer <- nil
	if err := ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	ob.Submit(dest("a"), bots.View{Text: "later still"}) // after the final: refused
	if err := ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.sent) != 1 || g.sent[0].text != "final" {
		t.Fatalf("delivered %+v, want only the final view", g.sent)
	}
}

// TestOutboxFinalFallsBackToNewMessage: a final view whose edit keeps
// failing is posted as a new message rather than dropped.
func TestOutboxFinalFallsBackToNewMessage(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	gone := errors.New("400: message to edit not found")
	w := newWire(gone, gone, gone, gone)
	ob.Register("p", w, bots.Limits{})
	start(t, ob)
	ob.Submit(dest("a"), bots.View{Text: "final", Final: true})
	select {
	case d := <-w.got:
		if d.text != "final" || d.msg != "" {
			t.Fatalf("delivered %+v, want the final view as a new message", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the final view was dropped")
	}
	if _, _, _, failed := ob.Stats(); failed != 0 {
		t.Fatalf("failed = %d", failed)
	}
}

// TestOutboxFallbackFinalKeepsItsPlace: two runs' finals whose edits keep
// failing in one chat both go out as new messages, one after a retry-after.
func TestOutboxFallbackFinalKeepsItsPlace(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	g := &gatedWire{wire: newWire(), entered: make(chan string), answer: make(chan error)}
	ob.Register("p", g, bots.Limits{})
	start(t, ob)
	ob.Submit(dest("a"), bots.View{Text: "final a", Final: true})
	ob.Submit(dest("b"), bots.View{Text: "final b", Final: true})
	tries := map[string]int{}
	for done := 0; done < 2; {
		var text string
		select {
		case text = <-g.entered:
		case <-time.After(20 * time.Second):
			t.Fatalf("a final was lost: tries %v", tries)
		}
		tries[text]++
		switch n := tries[text]; {
		case n <= 4: // the edit keeps failing
			g.answer <- errors.New("400: message to edit not found")
		case n == 5 && text == "final a": // as a new message, told to wait
			g.answer <- &bots.RetryAfterError{Wait: 50 * time.Millisecond}
		default:
			g.answer <- nil
			done++
		}
	}
	if err := ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.sent) != 2 || g.sent[0].msg != "" || g.sent[1].msg != "" {
		t.Fatalf("delivered %+v, want both finals as new messages", g.sent)
	}
}

// TestOutboxFlushWithDeliveryInFlight: a view submitted while another is
// being delivered (nothing else pending) still lets Flush return once both
// are out.
func TestOutboxFlushWithDeliveryInFlight(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	g := &gatedWire{wire: newWire(), entered: make(chan string), answer: make(chan error)}
	ob.Register("p", g, bots.Limits{})
	start(t, ob)
	ob.Submit(dest("a"), bots.View{Text: "one"})
	<-g.entered // "one" is in flight; nothing is pending
	flushed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		flushed <- ob.Flush(ctx)
	}()
	ob.Submit(dest("b"), bots.View{Text: "two"})
	g.answer <- nil
	if got := <-g.entered; got != "two" {
		t.Fatalf("second delivery %q", got)
	}
	g.answer <- nil
	if err := <-flushed; err != nil {
		t.Fatalf("Flush after both deliveries: %v", err)
	}
}

// TestNoticesToOneChatAreSeparate: two notices to one chat are two
// messages; the second does not replace the first while it waits.
func TestNoticesToOneChatAreSeparate(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	w := newWire(&bots.RetryAfterError{Wait: 50 * time.Millisecond})
	ob.Register("p", w, bots.Limits{})
	conv := &bots.Conversation{Outbox: ob}
	d := research.Destination{Platform: "p", ChatID: "c1"}
	conv.Notify(t.Context(), d, "first notice")
	start(t, ob)
	conv.Notify(t.Context(), d, "second notice")
	got := map[string]bool{w.next(t).text: true, w.next(t).text: true}
	if !got["first notice"] || !got["second notice"] {
		t.Fatalf("delivered %v, want both notices", got)
	}
}

// TestOutboxFailedProgressYieldsToNewerFinal: a progress view whose delivery fails while a final of the same
// message waits is dropped, not put back over the final (views not kept in a store have no id to tell
// them apart; the final was once lost this way behind a progress view that kept failing).
func TestOutboxFailedProgressYieldsToNewerFinal(t *testing.T) {
	t.Parallel()
	ob := bots.NewOutbox(nil)
	g := &gatedWire{wire: newWire(), entered: make(chan string), answer: make(chan error)}
	ob.Register("p", g, bots.Limits{})
	start(t, ob)
	ob.Submit(dest("a"), bots.View{Text: "progress"})
	if got := <-g.entered; got != "progress" {
		t.Fatalf("first send %q", got)
	}
	ob.Submit(dest("a"), bots.View{Text: "final", Final: true})
	g.answer <- errors.New("render failed")
	if got := <-g.entered; got != "final" {
		t.Fatalf("after the failed progress the outbox sent %q, want the final", got)
	}
	g.answer <- nil
	if err := ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.sent) != 1 || g.sent[0].text != "final" {
		t.Fatalf("delivered %+v, want the final view", g.sent)
	}
}
