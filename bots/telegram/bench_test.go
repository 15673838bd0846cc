package telegram_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/telegram"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
)

// BenchmarkDelivery runs research end to end against the fake Bot API
// enforcing Telegram's limits (telegramtest.TelegramLimits) and reports, per
// run: progress events produced, edits of the run's message sent (the
// confirm edit and the final included; plain-edits are the progress ones),
// 429s received, and the time from the run's final event to its final
// message and to its chart on the fake.
//
//	go test -run '^$' -bench Delivery -benchtime 5x ./bots/telegram/
//
// "steady" is, per iteration, two private chats and two members of a group
// running at once (a new group each iteration, as for a bot in many
// groups). "one-group" is two members of the same group running back to
// back: a run needs at least four calls in its group (quote, confirm edit,
// final, chart), so back-to-back runs exceed the group's 20 a minute and the
// adapter must hold them back.
func BenchmarkDelivery(b *testing.B) {
	users := []telegramtest.User{alice, bob, {ID: 1003, FirstName: "C"}, {ID: 1004, FirstName: "D"}}
	type seat struct {
		chat telegramtest.Chat
		user telegramtest.User
	}
	for _, sc := range []struct {
		name     string
		seats    []seat
		newGroup bool
	}{
		{"steady", []seat{{telegramtest.Private(alice), alice}, {telegramtest.Private(bob), bob}, {group, users[2]}, {group, users[3]}}, true},
		{"one-group", []seat{{group, users[2]}, {group, users[3]}}, false},
	} {
		b.Run(sc.name, func(b *testing.B) {
			var (
				mu    sync.Mutex
				ended = map[string]time.Time{}
				runAt = map[string]string{} // "chat/message" -> run id
			)
			bd := setup(b, options{bed: testbed.Options{Pace: 15 * time.Millisecond}, start: true,
				sink: func(next research.Sink) research.Sink {
					return research.SinkFunc(func(ev research.Event) {
						if ev.Final {
							mu.Lock()
							ended[ev.Run.ID] = time.Now()
							runAt[ev.Run.Request.Dest.ChatID+"/"+ev.Run.Request.Dest.MessageID] = ev.Run.ID
							mu.Unlock()
						}
						next.Publish(ev)
					})
				}})
			bd.wait = 3 * time.Minute // one group's minute can hold a final back
			for _, s := range sc.seats {
				bd.bed.Fund(who(s.user), billing.BucketCredit, 100*billing.Micro)
			}
			symbols := []string{"NVDA,AMD", "AAPL,MSFT", "TSLA,META", "AMZN,GOOG"}
			var runs, events, edits, progress int
			plainBy := map[bool][2]int{} // group? -> plain edits, runs
			var latencies, charts []time.Duration
			before := bd.fake.TooManyAnswered()
			last := make([]int, len(sc.seats))
			for i := 0; b.Loop(); i++ {
				if sc.newGroup && i > 0 {
					for j := range sc.seats {
						if sc.seats[j].chat.ID < 0 {
							sc.seats[j].chat = telegramtest.Group(group.ID-int64(i), "traders")
							last[j] = 0
						}
					}
				}
				quotes := make([]telegramtest.Message, len(sc.seats))
				for j, s := range sc.seats {
					bd.fake.SendText(s.chat, s.user, fmt.Sprintf("/research %s standard", symbols[j]))
				}
				for j, s := range sc.seats {
					quotes[j] = bd.replyAfter(b, s.chat.ID, "Quote: standard research on "+strings.ReplaceAll(symbols[j], ",", ", "), last[j])
					last[j] = quotes[j].ID
				}
				for j, s := range sc.seats {
					bd.fake.WaitAnswer(b, bd.fake.Press(s.chat, s.user, quotes[j].ID, button(b, quotes[j], "Confirm")))
				}
				for j, s := range sc.seats {
					bd.final(b, s.chat.ID, quotes[j].ID)
				}
				for j, s := range sc.seats {
					bd.fake.WaitCall(b, bd.wait, "sendPhoto", func(c telegramtest.Call) bool {
						return c.OK() && c.Int("chat_id") == s.chat.ID && replies(c, quotes[j].ID)
					})
				}
				for j, s := range sc.seats {
					mu.Lock()
					runID := runAt[fmt.Sprintf("%d/%d", s.chat.ID, quotes[j].ID)]
					mu.Unlock()
					for _, ev := range bd.events.Of(runID) {
						if !ev.Final {
							events++
						}
					}
					var finalAt time.Time
					pb := plainBy[s.chat.ID < 0]
					pb[1]++
					for _, c := range bd.edits(s.chat.ID, quotes[j].ID) {
						edits++
						if c.Fields["parse_mode"] == "" {
							progress++
							pb[0]++
						} else if finalAt.IsZero() {
							finalAt = c.At
						}
					}
					plainBy[s.chat.ID < 0] = pb
					mu.Lock()
					latencies = append(latencies, finalAt.Sub(ended[runID]))
					for _, c := range bd.fake.Calls("sendPhoto") {
						if c.OK() && c.Int("chat_id") == s.chat.ID && replies(c, quotes[j].ID) {
							charts = append(charts, c.At.Sub(ended[runID]))
						}
					}
					mu.Unlock()
					runs++
				}
			}
			slices.Sort(latencies)
			slices.Sort(charts)
			b.ReportMetric(float64(events)/float64(runs), "events/run")
			b.ReportMetric(float64(edits)/float64(runs), "edits/run")
			b.ReportMetric(float64(progress)/float64(runs), "plain-edits/run")
			for group, pb := range plainBy {
				b.ReportMetric(float64(pb[0])/float64(pb[1]), map[bool]string{false: "plain-edits/private-run", true: "plain-edits/group-run"}[group])
			}
			b.ReportMetric(float64(bd.fake.TooManyAnswered()-before), "429s")
			b.ReportMetric(float64(latencies[len(latencies)/2].Milliseconds()), "final-p50-ms")
			b.ReportMetric(float64(latencies[len(latencies)-1].Milliseconds()), "final-max-ms")
			b.ReportMetric(float64(charts[len(charts)/2].Milliseconds()), "chart-p50-ms")
			b.ReportMetric(float64(len(charts))/float64(runs), "charts/run")
		})
	}
}

// replyAfter is reply for a message after message id after.
func (b *bundle) replyAfter(t testing.TB, chat int64, want string, after int) telegramtest.Message {
	t.Helper()
	var found telegramtest.Message
	b.fake.Wait(t, b.wait, "a message with "+want, func() bool {
		for _, c := range b.fake.Calls("sendMessage") {
			if c.OK() && c.Int("chat_id") == chat && c.MessageID > after {
				if m, ok := b.fake.Message(chat, c.MessageID); ok && strings.HasPrefix(m.Visible, want) {
					found = m
					return true
				}
			}
		}
		return false
	})
	return found
}

// replies reports whether a call replies to message id.
func replies(c telegramtest.Call, id int) bool {
	var p struct {
		MessageID int `json:"message_id"`
	}
	return json.Unmarshal([]byte(c.Fields["reply_parameters"]), &p) == nil && p.MessageID == id
}

// BenchmarkDeliveryTwoInstances: two instances of the bot on one PostgreSQL
// (each its own engine, River workers, outbox and adapter; one of them
// polls the fake), sharing the chat budget in the database, deliver runs of
// members of one group. Per iteration two members start standard runs at
// once, and whichever instance's worker takes a run edits its message. It
// reports Telegram's 429s the fake would have answered, how the runs split
// between the instances, and the time from a run's final event to its
// final message: p50, p99 (the maximum at these counts) over every run, and
// p50 over the runs whose group minute had room (the steady state; a run
// whose calls do not fit the group's 20 a minute waits for the minute by
// design, see BenchmarkDelivery's one-group case).
//
//	go test -run '^$' -bench DeliveryTwoInstances -benchtime 6x ./bots/telegram/
func BenchmarkDeliveryTwoInstances(b *testing.B) {
	var (
		mu    sync.Mutex
		ended = map[string]time.Time{}
		by    = map[string]int{} // run id -> instance that delivered its final event
		runAt = map[string]string{}
	)
	record := func(inst int, ev research.Event) {
		if ev.Final {
			mu.Lock()
			ended[ev.Run.ID] = time.Now()
			by[ev.Run.ID] = inst
			runAt[ev.Run.Request.Dest.ChatID+"/"+ev.Run.Request.Dest.MessageID] = ev.Run.ID
			mu.Unlock()
		}
	}
	bd := setup(b, options{bed: testbed.Options{Postgres: true, Pace: 15 * time.Millisecond}, start: true, shared: true,
		sink: func(next research.Sink) research.Sink {
			return research.SinkFunc(func(ev research.Event) { record(1, ev); next.Publish(ev) })
		}})
	bd.wait = 3 * time.Minute

	// The second instance: its own engine and workers on the same database,
	// its own outbox and adapter (not polling: the first takes the updates).
	log := slog.New(slog.DiscardHandler)
	ob2 := bots.NewOutbox(log)
	var conv2 atomic.Pointer[bots.Conversation]
	st2, e2 := bd.bed.InstanceWithSink(research.SinkFunc(func(ev research.Event) {
		record(2, ev)
		bd.events.Publish(ev)
		conv2.Load().Publish(ev)
	}))
	conv2.Store(&bots.Conversation{Engine: e2, Ledger: st2, Runs: st2, Outbox: ob2, Log: log})
	ad2, err := telegram.New(telegram.Config{Token: telegramtest.Token, APIURL: bd.fake.URL, Log: log, Rates: st2.(bots.RateStore)}, conv2.Load())
	if err != nil {
		b.Fatal(err)
	}
	ob2.Register(telegram.Platform, ad2, telegram.Limits)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go ob2.Run(ctx)

	members := []telegramtest.User{{ID: 1003, FirstName: "C"}, {ID: 1004, FirstName: "D"}}
	for _, u := range members {
		bd.bed.Fund(who(u), billing.BucketCredit, 100*billing.Micro)
	}
	symbols := []string{"NVDA,AMD", "AAPL,MSFT"}
	var latencies []time.Duration
	var steady []time.Duration
	runs := 0
	before := bd.fake.TooManyAnswered()
	last := make([]int, len(members))
	for b.Loop() {
		quotes := make([]telegramtest.Message, len(members))
		for j, u := range members {
			bd.fake.SendText(group, u, fmt.Sprintf("/research %s standard", symbols[j]))
		}
		for j := range members {
			quotes[j] = bd.replyAfter(b, group.ID, "Quote: standard research on "+strings.ReplaceAll(symbols[j], ",", ", "), last[j])
			last[j] = quotes[j].ID
		}
		for j, u := range members {
			bd.fake.WaitAnswer(b, bd.fake.Press(group, u, quotes[j].ID, button(b, quotes[j], "Confirm")))
		}
		for j := range members {
			bd.final(b, group.ID, quotes[j].ID)
		}
		for j := range members {
			mu.Lock()
			runID := runAt[fmt.Sprintf("%d/%d", group.ID, quotes[j].ID)]
			end := ended[runID]
			mu.Unlock()
			var finalAt time.Time
			for _, c := range bd.edits(group.ID, quotes[j].ID) {
				if c.Fields["parse_mode"] != "" {
					finalAt = c.At
					break
				}
			}
			// The group's calls in the minute before the run ended: below
			// the limit less what its final needs, the minute had room.
			n := 0
			for _, c := range bd.fake.Calls("") {
				if c.Method != "getUpdates" && c.Int("chat_id") == group.ID && c.OK() && c.At.After(end.Add(-time.Minute)) && c.At.Before(end) {
					n++
				}
			}
			d := finalAt.Sub(end)
			latencies = append(latencies, d)
			if n <= telegram.GroupPerMinute-2 {
				steady = append(steady, d)
			}
			runs++
		}
	}
	mu.Lock()
	n2 := 0
	for _, inst := range by {
		if inst == 2 {
			n2++
		}
	}
	mu.Unlock()
	slices.Sort(latencies)
	slices.Sort(steady)
	b.ReportMetric(float64(bd.fake.TooManyAnswered()-before), "429s")
	b.ReportMetric(float64(n2)/float64(runs), "share_on_2nd")
	b.ReportMetric(float64(latencies[len(latencies)/2].Milliseconds()), "final-p50-ms")
	b.ReportMetric(float64(latencies[(len(latencies)*99)/100].Milliseconds()), "final-p99-ms")
	b.ReportMetric(float64(len(steady)), "steady-runs")
	if len(steady) > 0 {
		b.ReportMetric(float64(steady[len(steady)/2].Milliseconds()), "steady-final-p50-ms")
		b.ReportMetric(float64(steady[len(steady)-1].Milliseconds()), "steady-final-max-ms")
	}
}
