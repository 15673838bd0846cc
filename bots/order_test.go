package bots_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
)

// viewLog is one fake chat platform both instances edit: it keeps every view
// each message showed, in the order the edits arrived.
type viewLog struct {
	mu    sync.Mutex
	shown map[string][]bots.View
}

func (s *viewLog) Send(ctx context.Context, d research.Destination, v bots.View) (string, error) {
	return "", s.Edit(ctx, d, v)
}

func (s *viewLog) Edit(_ context.Context, d research.Destination, v bots.View) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shown[d.MessageID] = append(s.shown[d.MessageID], v)
	return nil
}

// TestViewsOrderedAcrossInstances: two instances on one PostgreSQL, each
// with its own conversation and outbox (rate-limited per chat, so views
// queue, one of them slowly), confirm runs and press Pause, Resume and Cancel on each other's
// runs at random. No message ever shows a non-final view after its final.
func TestViewsOrderedAcrossInstances(t *testing.T) {
	t.Parallel()
	b := testbed.New(t, testbed.Options{Postgres: true, NoWorkers: true, Pace: time.Millisecond, ProgressEvery: 20 * time.Millisecond})
	scr := &viewLog{shown: map[string][]bots.View{}}
	type instance struct {
		engine *research.Engine
		outbox *bots.Outbox
	}
	var ins [2]instance
	for i := range ins {
		ob := bots.NewOutbox(nil)
		ob.Store = b.Store.(bots.MessageStore)
		// The second instance's outbox is slow (a tight chat budget), so its
		// views of a run often leave after the other instance's final.
		ob.Register("p", scr, bots.Limits{PerChat: rate.Limit([]float64{50, 3}[i]), PerChatBurst: 1})
		sink := &lateSink{}
		store, engine := b.InstanceWithSink(sink)
		sink.set(&bots.Conversation{Engine: engine, Ledger: store, Runs: store, Outbox: ob})
		ins[i] = instance{engine: engine, outbox: ob}
		start(t, ob)
	}
	owner := billing.Identity{Platform: "p", ExternalID: "owner"}
	b.Fund(owner, billing.BucketCredit, 20*billing.Micro)
	rng := rand.New(rand.NewPCG(10, 6))
	const runs = 24
	var wg sync.WaitGroup
	var ids []string
	for i := range runs {
		seed := rng.Uint64()
		q, err := b.Engine.Quote(t.Context(), research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL", "NVDA"},
			Depth: research.Standard, Owner: owner, Dest: research.Destination{Platform: "p", ChatID: fmt.Sprintf("c%d", i%4), MessageID: fmt.Sprintf("m%d", i)}})
		if err != nil {
			t.Fatal(err)
		}
		first := ins[i%2].engine
		run, _, err := first.Confirm(t.Context(), q.ID, owner, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.ID)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 1))
			press := func() {
				e := ins[r.IntN(2)].engine
				switch r.IntN(4) {
				case 0:
					_, _ = e.Pause(context.Background(), run.ID, owner)
				case 1:
					_, _ = e.Resume(context.Background(), run.ID, owner)
				case 2:
					_, _ = e.Cancel(context.Background(), run.ID, owner)
				}
			}
			for range r.IntN(4) {
				b.Events.Wait(t, run.ID, 90*time.Second, func(ev research.Event) bool { return ev.Run.Done >= r.IntN(3) })
				press()
			}
			// Whatever the presses did, the run ends: resume or cancel a pause.
			for {
				cur, err := b.Store.Run(context.Background(), run.ID)
				if err != nil || cur.State.Terminal() {
					break
				}
				if cur.State == research.Paused {
					if r.IntN(2) == 0 {
						_, _ = ins[r.IntN(2)].engine.Resume(context.Background(), run.ID, owner)
					} else {
						_, _ = ins[r.IntN(2)].engine.Cancel(context.Background(), run.ID, owner)
					}
				}
				b.Events.Wait(t, run.ID, 90*time.Second, func(ev research.Event) bool { return ev.Run.Version > cur.Version })
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		b.Events.WaitFinal(t, id, 90*time.Second) // and so submitted to an outbox
	}
	for _, in := range ins {
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		if err := in.outbox.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	scr.mu.Lock()
	defer scr.mu.Unlock()
	finals := 0
	for msg, views := range scr.shown {
		final := -1
		for i, v := range views {
			if v.Final && final < 0 {
				final = i
			}
			if final >= 0 && !v.Final {
				t.Errorf("message %s went back from its final view (%q, view %d) to %q (view %d)", msg, views[final].Title, final, v.Title+" "+v.Text, i)
			}
		}
		if final >= 0 {
			finals++
		} else {
			var seen []string
			for _, v := range views {
				seen = append(seen, v.Title+"|"+v.Text)
			}
			t.Logf("message %s never showed a final view: %q", msg, seen)
		}
	}
	if finals != runs {
		t.Errorf("%d of %d messages got their final view", finals, runs)
	}
	b.CheckSettled()
}

// lateSink forwards to a sink set once the engine it needs exists.
type lateSink struct {
	mu sync.Mutex
	s  research.Sink
}

func (l *lateSink) set(s research.Sink) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s = s
}

func (l *lateSink) Publish(ev research.Event) {
	l.mu.Lock()
	s := l.s
	l.mu.Unlock()
	if s != nil {
		s.Publish(ev)
	}
}

// finalLog is a viewLog that signals every final view it shows.
type finalLog struct {
	viewLog
	finals chan string // message ids
}

func (s *finalLog) Send(ctx context.Context, d research.Destination, v bots.View) (string, error) {
	return "", s.Edit(ctx, d, v)
}

func (s *finalLog) Edit(ctx context.Context, d research.Destination, v bots.View) error {
	_ = s.viewLog.Edit(ctx, d, v)
	if v.Final {
		s.finals <- d.MessageID
	}
	return nil
}

func (s *finalLog) views(msg string) []bots.View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bots.View(nil), s.shown[msg]...)
}

// TestPressEditOrderedAcrossInstances: a button press's edit of a run's
// message (the confirm turns the quote into the run's card) goes through the
// same per-run order as the outboxes' sends, on both stores. Instance A
// answers the confirm press; before A's adapter edits the message, instance
// B runs the run and its outbox delivers the final: A's edit, of an older
// view, is not made. An edit made first is followed by the final, which
// stays last.
func TestPressEditOrderedAcrossInstances(t *testing.T) {
	t.Parallel()
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			t.Parallel()
			pressEditOrdered(t, pg)
		})
	}
}

func pressEditOrdered(t *testing.T, pg bool) {
	b := testbed.New(t, testbed.Options{Postgres: pg, NoWorkers: true})
	scr := &finalLog{viewLog: viewLog{shown: map[string][]bots.View{}}, finals: make(chan string, 16)}
	conv := func(e *research.Engine, s testbed.Store) *bots.Conversation {
		ob := bots.NewOutbox(nil)
		ob.Store = s.(bots.MessageStore)
		ob.Register("p", scr, bots.Limits{})
		start(t, ob)
		return &bots.Conversation{Engine: e, Ledger: s, Runs: s, Outbox: ob}
	}
	a := conv(b.Engine, b.Store) // answers the presses; runs nothing
	gate := make(chan struct{})
	sinkB := &lateSink{}
	storeB, engineB := b.InstanceWithSink(research.SinkFunc(func(ev research.Event) {
		<-gate // closed at once, or once A's edit is made
		sinkB.Publish(ev)
	}))
	sinkB.set(conv(engineB, storeB))
	owner := billing.Identity{Platform: "p", ExternalID: "owner"}
	b.Fund(owner, billing.BucketCredit, billing.Micro)

	for i, editFirst := range []bool{false, true} {
		msg := fmt.Sprintf("m%d", i)
		d := research.Destination{Platform: "p", ChatID: "c1", MessageID: msg}
		if !editFirst {
			close(gate)
		} else {
			gate = make(chan struct{})
		}
		q, err := b.Engine.Quote(t.Context(), research.Request{Kind: research.KindResearch, Symbols: []string{"AAPL"},
			Depth: research.Quick, Owner: owner, Dest: d})
		if err != nil {
			t.Fatal(err)
		}
		replies := a.Handle(t.Context(), bots.Incoming{Identity: owner, Chat: bots.Chat{Platform: "p", ID: "c1"}, MessageID: msg,
			Button: "q:" + q.ID + ":confirm"})
		var card *bots.Reply
		for i := range replies {
			if replies[i].RunID != "" {
				card = &replies[i]
			}
		}
		if card == nil || !card.Edit || card.RunVersion == 0 {
			t.Fatalf("the confirm press answered %+v, want an edit of the run's card", replies)
		}
		edit := func() bool {
			sent, err := a.EditRun(t.Context(), d, card.RunID, card.RunVersion, func(ctx context.Context) error { return scr.Edit(ctx, d, card.View) })
			if err != nil {
				t.Fatal(err)
			}
			return sent
		}
		if editFirst {
			if !edit() {
				t.Fatal("an edit before any newer view of the run was refused")
			}
			close(gate)
		}
		select {
		case got := <-scr.finals:
			if got != msg {
				t.Fatalf("a final went to %s, want %s", got, msg)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("message %s never showed its final", msg)
		}
		if !editFirst && edit() {
			t.Fatal("the press's edit of an older view was made after the run's final went out")
		}
		views := scr.views(msg)
		if len(views) == 0 || !views[len(views)-1].Final {
			t.Fatalf("message %s went back from its final: %d views", msg, len(views))
		}
		if editFirst && views[0].Final {
			t.Fatalf("message %s did not show the press's card before its final", msg)
		}
	}
	b.CheckSettled()
}
