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
