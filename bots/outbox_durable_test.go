package bots_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
)

// fakeClock is an outbox clock the test moves: After's channels fire when
// the clock passes them; waiting signals each After, so the test can jump
// to the deadline the outbox waits for.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []fakeTimer
	waiting chan struct{}
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), waiting: make(chan struct{}, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	select {
	case c.waiting <- struct{}{}:
	default:
	}
	return ch
}

// Jump moves the clock to the deadline of the newest timer (the one the
// outbox's loop is waiting on) and fires every timer due.
func (c *fakeClock) Jump() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return
	}
	if at := c.timers[len(c.timers)-1].at; at.After(c.now) {
		c.now = at
	}
	c.fire()
}

// Advance moves the clock by d and fires every timer due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fire()
}

func (c *fakeClock) fire() {
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
		} else {
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

// outage is a platform answering 500 until its clock reaches up.
type outage struct {
	clock *fakeClock
	up    time.Time
	mu    sync.Mutex
	tries int
	sent  []delivery
	got   chan delivery
}

func (o *outage) Send(ctx context.Context, d research.Destination, v bots.View) (string, error) {
	return "new-1", o.Edit(ctx, d, v)
}

func (o *outage) Edit(_ context.Context, d research.Destination, v bots.View) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tries++
	if o.clock.Now().Before(o.up) {
		return errors.New("500 Internal Server Error")
	}
	dl := delivery{msg: d.MessageID, text: v.Text}
	o.sent = append(o.sent, dl)
	o.got <- dl
	return nil
}

// until runs the outbox's clock forward, to each deadline it waits for,
// until the platform delivered something.
func until(t *testing.T, clk *fakeClock, got <-chan delivery) delivery {
	t.Helper()
	for {
		select {
		case d := <-got:
			return d
		case <-clk.waiting:
			clk.Jump()
		case <-time.After(20 * time.Second):
			t.Fatal("nothing delivered")
		}
	}
}

// TestOutboxFinalSurvivesOutage: the platform answers 500 for 30 s (of the
// outbox's clock); the final view is retried with backoff past the old six
// seconds and edits the run's message once the platform is back, once, and
// is not posted as a second message.
func TestOutboxFinalSurvivesOutage(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	p := &outage{clock: clk, up: clk.Now().Add(30 * time.Second), got: make(chan delivery, 10)}
	ob := bots.NewOutbox(nil)
	ob.Now, ob.After = clk.Now, clk.After
	ob.Register("p", p, bots.Limits{})
	start(t, ob)
	ob.Submit(dest("a"), bots.View{Text: "final", Final: true})
	d := until(t, clk, p.got)
	if d.msg != "a" || d.text != "final" {
		t.Fatalf("delivered %+v, want the final as an edit of message a", d)
	}
	if err := ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.sent) != 1 || p.tries < 5 {
		t.Fatalf("delivered %+v after %d tries", p.sent, p.tries)
	}
	if _, _, _, failed := ob.Stats(); failed != 0 {
		t.Fatalf("failed = %d", failed)
	}
}

// TestOutboxFinalAfterAnHourIsANewMessage: a final whose edit fails for an
// hour is then posted as a new message.
func TestOutboxFinalAfterAnHourIsANewMessage(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	// New messages fail too until 50 minutes in (the platform is down).
	w := &editsFail{outage: outage{clock: clk, got: make(chan delivery, 10)}, newFrom: clk.Now().Add(50 * time.Minute)}
	ob := bots.NewOutbox(nil)
	ob.Now, ob.After = clk.Now, clk.After
	ob.Register("p", w, bots.Limits{})
	start(t, ob)
	ob.Submit(dest("a"), bots.View{Text: "final", Final: true})
	d := until(t, clk, w.got)
	if d.msg != "" || clk.Now().Sub(w.start()) < time.Hour {
		t.Fatalf("delivered %+v at %s", d, clk.Now())
	}
}

// editsFail refuses every edit; new messages fail until newFrom.
type editsFail struct {
	outage
	newFrom time.Time
	first   time.Time
}

func (e *editsFail) start() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.first
}

func (e *editsFail) Send(_ context.Context, d research.Destination, v bots.View) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.clock.Now().Before(e.newFrom) {
		return "", errors.New("503 Service Unavailable")
	}
	e.got <- delivery{text: v.Text}
	return "new-1", nil
}

func (e *editsFail) Edit(context.Context, research.Destination, bots.View) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.first.IsZero() {
		e.first = e.clock.Now()
	}
	return errors.New("500 Internal Server Error")
}

// TestOutboxFinalSurvivesCrash (both stores): a final view is stored when
// submitted; its process dies while the platform is down; another process's
// outbox takes the message over once the claim lapses and delivers it once.
func TestOutboxFinalSurvivesCrash(t *testing.T) {
	t.Parallel()
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			t.Parallel()
			b := testbed.New(t, testbed.Options{Postgres: pg, NoWorkers: true})
			store := b.Store.(bots.MessageStore)
			clk := newFakeClock()

			down := &outage{clock: clk, up: clk.Now().Add(24 * time.Hour), got: make(chan delivery, 10)}
			dying := bots.NewOutbox(nil)
			dying.Store, dying.Now, dying.After = store, clk.Now, clk.After
			dying.Register("p", down, bots.Limits{})
			ctx, crash := context.WithCancel(context.Background())
			go dying.Run(ctx)
			dying.Submit(dest("a"), bots.View{Text: "the result", Final: true})
			crash() // the process dies with the final undelivered

			up := &outage{clock: clk, up: clk.Now(), got: make(chan delivery, 10)}
			next := bots.NewOutbox(nil)
			next.Store, next.Now, next.After = store, clk.Now, clk.After
			next.Register("p", up, bots.Limits{})
			start(t, next)
			next.Reclaim(t.Context()) // the dead process's claim is still live: nothing yet
			select {
			case d := <-up.got:
				t.Fatalf("delivered %+v while the first process's claim was live", d)
			default:
			}
			clk.Advance(20 * time.Second)
			next.Reclaim(t.Context())
			d := until(t, clk, up.got)
			if d.msg != "a" || d.text != "the result" {
				t.Fatalf("delivered %+v", d)
			}
			if err := next.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Minute)
			next.Reclaim(t.Context()) // delivered: never again
			third := bots.NewOutbox(nil)
			third.Store, third.Now = store, clk.Now
			third.Register("p", up, bots.Limits{})
			third.Reclaim(t.Context())
			idle, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			if err := third.Flush(idle); err != nil {
				t.Fatalf("a third process took the delivered message: %v", err)
			}
			up.mu.Lock()
			defer up.mu.Unlock()
			if len(up.sent) != 1 {
				t.Fatalf("delivered %d times: %+v", len(up.sent), up.sent)
			}
		})
	}
}

// TestPruneMessages (both stores): delivered and given-up messages older
// than the cut go, in batches (more rows than one batch holds); undelivered
// ones and recent ones stay, and a run's view order goes once its final is
// that old, after which an old view of the ended run is still refused.
func TestPruneMessages(t *testing.T) {
	t.Parallel()
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			b := testbed.New(t, testbed.Options{Postgres: pg, NoWorkers: true})
			store := b.Store.(bots.MessageStore)
			old := time.Now().Add(-48 * time.Hour)
			save := func(i int) int64 {
				id, err := store.SaveMessage(ctx, bots.StoredMessage{Platform: "p", Key: fmt.Sprintf("c/m%d", i), Body: []byte(`{}`), Created: old}, "o", old)
				if err != nil {
					t.Error(err)
				}
				return id
			}
			const many = 1203 // more than one batch
			var wg sync.WaitGroup
			for w := range 8 { // in parallel: PostgreSQL's commits are the test's cost
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < many; i += 8 {
						if err := store.FinishMessage(ctx, save(i), i%2 == 0, old); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			pending := save(many)
			recent := save(many + 1)
			if err := store.FinishMessage(ctx, recent, true, time.Now()); err != nil {
				t.Fatal(err)
			}
			// An ended run whose final went out two days ago.
			owner := billing.Identity{Platform: "p", ExternalID: "owner"}
			b.Fund(owner, billing.BucketCredit, billing.Micro)
			q, err := b.Engine.Quote(ctx, research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL"}, Depth: research.Quick, Owner: owner})
			if err != nil {
				t.Fatal(err)
			}
			run, _, err := b.Engine.Confirm(ctx, q.ID, owner, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Engine.Cancel(ctx, run.ID, owner); err != nil {
				t.Fatal(err)
			}
			if _, _, err := store.BeginView(ctx, run.ID, run.Version+1, true, old, old); err != nil {
				t.Fatal(err)
			}

			n, err := store.PruneMessages(ctx, time.Now().Add(-24*time.Hour))
			if err != nil || n != many+1 {
				t.Fatalf("pruned %d rows (%v), want %d messages and one run's views", n, err, many+1)
			}
			// What is left: the undelivered one, claimable once its claim lapsed.
			ms, err := store.ClaimMessages(ctx, "next", []string{"p"}, time.Now(), time.Now().Add(time.Minute), 10)
			if err != nil || len(ms) != 1 || ms[0].ID != pending {
				t.Fatalf("after the prune: %+v (%v), want only the undelivered message", ms, err)
			}
			if ok, _, err := store.BeginView(ctx, run.ID, 1, false, time.Now(), time.Now().Add(time.Minute)); err != nil || ok {
				t.Fatalf("an old view of an ended run whose order was pruned: ok %v (%v)", ok, err)
			}
			if n, err := store.PruneMessages(ctx, time.Now().Add(-24*time.Hour)); err != nil || n != 0 {
				t.Fatalf("a second prune took %d rows (%v)", n, err)
			}
		})
	}
}
