package telegram_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

func dest(chat int64, msg string) research.Destination {
	return research.Destination{Platform: telegram.Platform, ChatID: fmt.Sprint(chat), MessageID: msg}
}

func progressView(text string) bots.View {
	return bots.View{Kind: bots.KindProgress, Title: "Research X (quick): running", Text: text,
		Buttons: [][]bots.Button{{{Label: "Cancel", Data: "r:rAAAAAAAAAAAAAAAA:cancel", Style: "danger"}}}}
}

// flush waits until the outbox and the adapter's attachment queues are idle.
func flush(t *testing.T, b *bundle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := b.outbox.Flush(ctx); err != nil {
		t.Fatal("outbox did not flush:", err)
	}
	if err := b.ad.Flush(ctx); err != nil {
		t.Fatal("attachments did not flush:", err)
	}
}

// TestNotModifiedIsSuccess: Telegram's "message is not modified" counts as
// a delivered edit, for the outbox's progress edits and for finals.
func TestNotModifiedIsSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}})
	id, err := b.ad.Send(t.Context(), dest(alice.ID, ""), progressView("step 1"))
	if err != nil {
		t.Fatal(err)
	}
	b.fake.Script("editMessageText", telegramtest.Answer{Code: 400, Description: telegramtest.NotModified})
	b.outbox.Submit(dest(alice.ID, id), progressView("step 2"))
	flush(t, b)
	if sent, _, _, failed := b.outbox.Stats(); sent != 1 || failed != 0 {
		t.Fatalf("outbox sent %d failed %d, want 1 and 0", sent, failed)
	}
	b.fake.Script("editMessageText", telegramtest.Answer{Code: 400, Description: telegramtest.NotModified})
	if err := b.ad.Edit(t.Context(), dest(alice.ID, id), bots.View{Kind: bots.KindFinal, Final: true, Title: "done", Text: "fine"}); err != nil {
		t.Fatalf("not modified = %v, want success", err)
	}
	if n := len(b.fake.Calls("editMessageText")); n != 2 {
		t.Fatalf("%d edits, want 2", n)
	}
}

// TestRetryAfterHonoured: a 429 becomes *bots.RetryAfterError with
// Telegram's retry_after, and the outbox sends again only after it.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}})
	id, err := b.ad.Send(t.Context(), dest(bob.ID, ""), progressView("step 1"))
	if err != nil {
		t.Fatal(err)
	}
	final := bots.View{Kind: bots.KindFinal, Final: true, Title: "Research X: succeeded", Text: "all good", Notice: research.Notice}
	b.fake.Script("editMessageText", telegramtest.TooMany(1))
	var ra *bots.RetryAfterError
	if err := b.ad.Edit(t.Context(), dest(bob.ID, id), final); !errors.As(err, &ra) || ra.Wait != time.Second {
		t.Fatalf("429 = %v, want a RetryAfterError of 1s", err)
	}

	b.fake.Script("editMessageText", telegramtest.TooMany(1))
	b.outbox.Submit(dest(bob.ID, id), final)
	flush(t, b)
	var limited, ok time.Time
	for _, c := range b.fake.Calls("editMessageText") {
		switch {
		case c.Code == 429:
			limited = c.At
		case c.OK():
			ok = c.At
		}
	}
	if gap := ok.Sub(limited); gap < time.Second {
		t.Fatalf("the edit came %s after the 429 asking for 1s", gap)
	}
	if m, _ := b.fake.Message(bob.ID, mustAtoi(t, id)); !strings.Contains(m.Visible, "all good") {
		t.Fatalf("final not shown: %q", m.Visible)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// longReport is a report of about n characters with model output that
// tries to break HTML and ping people.
func longReport(n int) *research.Report {
	rep := &research.Report{Title: "t", DataSource: "demo", Synthetic: true, RuleBased: true, Notice: research.Notice,
		AsOf: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), Synthesis: "Buy <b>nothing</b> & ask @everyone; 1 < 2 > 0."}
	para := "The model wrote <script>alert(1)</script> & <i>unclosed; ping @channel and @admin_team. " + strings.Repeat("Momentum is mixed ", 20) + "\n\n"
	for i := 0; len(rep.Bull) < n; i++ {
		rep.Bull += fmt.Sprintf("%d. %s", i, para)
	}
	return rep
}

func finalView(rep *research.Report, receipt string) bots.View {
	return bots.View{Kind: bots.KindFinal, Final: true, Title: "Research NVDA: succeeded", Report: rep, Notice: research.Notice,
		Fields: []bots.Field{{Name: "Cost", Value: "Charged $0.01 from your Credit (ledger entry 7); $0.02 released."}},
		Image:  []byte("\x89PNG\r\n\x1a\nfake"), ImageName: "chart-rABC.png",
		Buttons: [][]bots.Button{{{Label: "Receipt", URL: receipt}}}}
}

// TestLongFinal: a report over 4096 characters is split into valid HTML
// messages that reply to the run's message; a much longer one becomes a
// document; model text is escaped and pings nobody.
func TestLongFinal(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}})
	for _, tc := range []struct {
		chat     int64
		size     int
		parts    int
		document bool
	}{{alice.ID, 6000, 2, false}, {bob.ID, 30000, 1, true}} {
		id, err := b.ad.Send(t.Context(), dest(tc.chat, ""), progressView("writing"))
		if err != nil {
			t.Fatal(err)
		}
		b.outbox.Submit(dest(tc.chat, id), finalView(longReport(tc.size), "https://forgebot.example.com/r/abc"))
		flush(t, b)
		msgs := b.fake.Messages(tc.chat)
		var texts []telegramtest.Message
		var doc, photo *telegramtest.Message
		for i, m := range msgs {
			switch m.Kind {
			case "text":
				texts = append(texts, m)
			case "document":
				doc = &msgs[i]
			case "photo":
				photo = &msgs[i]
			}
		}
		if len(texts) != tc.parts || (doc != nil) != tc.document || photo == nil {
			t.Fatalf("%d chars: %d text messages, document %v, photo %v", tc.size, len(texts), doc != nil, photo != nil)
		}
		main := texts[0]
		if fmt.Sprint(main.ID) != id || len(main.Buttons()) != 1 || main.Buttons()[0].URL != "https://forgebot.example.com/r/abc" {
			t.Fatalf("main message %d (run message %s), buttons %+v", main.ID, id, main.Buttons())
		}
		all := ""
		for i, m := range texts {
			if m.ParseMode != "HTML" || telegramtest.Len(m.Text) > 4096 {
				t.Fatalf("part %d: %s, %d units", i, m.ParseMode, telegramtest.Len(m.Text))
			}
			if i > 0 && m.ReplyTo != main.ID {
				t.Fatalf("part %d replies to %d", i, m.ReplyTo)
			}
			all += m.Visible
		}
		if !strings.Contains(main.Visible, "Charged $0.01 from your Credit") || !strings.Contains(all, research.Notice) {
			t.Fatalf("the charge or the notice is missing:\n%s", all)
		}
		if tc.document {
			if !strings.Contains(string(doc.File.Data), "<script>alert(1)</script>") || doc.File.Name != "report-rABC.txt" || doc.ReplyTo != main.ID {
				t.Fatalf("document %q replying to %d", doc.File.Name, doc.ReplyTo)
			}
		} else if !strings.Contains(all, "<script>alert(1)</script> & <i>unclosed") {
			t.Fatalf("model text not shown verbatim:\n%s", all)
		}
		if strings.Contains(all, "@everyone") || strings.Contains(all, "@channel") || !tc.document && !strings.Contains(all, "@\u2060everyone") {
			t.Fatalf("mentions survive:\n%s", all)
		}
	}
	if n := b.fake.TooManyAnswered(); n != 0 {
		t.Errorf("%d calls broke Telegram's rate limits", n)
	}
}

// TestReceiptLinkFallback: a receipt URL Telegram refuses as a button
// (localhost, or whatever it says is invalid) is shown in the text.
func TestReceiptLinkFallback(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{NoWorkers: true}})
	for i, tc := range []struct {
		url    string
		script bool
	}{{"http://127.0.0.1:8080/r/abc", true}, {"http://localhost:8080/r/abc", false}} {
		chat := int64(2000 + i)
		id, err := b.ad.Send(t.Context(), dest(chat, ""), progressView("writing"))
		if err != nil {
			t.Fatal(err)
		}
		if tc.script {
			b.fake.Script("editMessageText", telegramtest.Answer{Code: 400, Description: "Bad Request: BUTTON_URL_INVALID"})
		}
		v := finalView(longReport(100), tc.url)
		v.Image = nil
		if err := b.ad.Edit(t.Context(), dest(chat, id), v); err != nil {
			t.Fatal(err)
		}
		m, _ := b.fake.Message(chat, mustAtoi(t, id))
		if len(m.Buttons()) != 0 || !strings.Contains(m.Visible, "Receipt: "+tc.url) {
			t.Fatalf("%s: buttons %+v, text:\n%s", tc.url, m.Buttons(), m.Visible)
		}
	}
}

// TestProgressBurst: a burst of progress events (each engine event
// published ten times over) yields edits within Telegram's limits, for runs
// in a private chat and two in one group, and every message still ends in
// its final state.
func TestProgressBurst(t *testing.T) {
	t.Parallel()
	var events atomic.Int64
	b := setup(t, options{bed: testbed.Options{Pace: 6 * time.Millisecond}, start: true,
		sink: func(next research.Sink) research.Sink {
			return research.SinkFunc(func(ev research.Event) {
				if ev.Final {
					events.Add(1)
					next.Publish(ev)
					return
				}
				for i := range 10 {
					ev := ev
					ev.Note = fmt.Sprintf("burst %d", i)
					events.Add(1)
					next.Publish(ev)
				}
			})
		}})
	dm := telegramtest.Private(alice)
	type run struct {
		chat  telegramtest.Chat
		user  telegramtest.User
		quote telegramtest.Message
		start time.Time
	}
	runs := []*run{{chat: dm, user: alice}, {chat: group, user: alice}, {chat: group, user: bob}}
	for _, r := range runs {
		b.bed.Fund(who(r.user), billing.BucketCredit, billing.Micro)
	}
	for i, r := range runs {
		b.fake.SendText(r.chat, r.user, fmt.Sprintf("/research %s standard", []string{"NVDA,AMD", "AAPL,MSFT", "TSLA,META"}[i]))
		r.quote = b.reply(t, r.chat.ID, "Quote: standard research on "+[]string{"NVDA, AMD", "AAPL, MSFT", "TSLA, META"}[i])
	}
	for _, r := range runs {
		r.start = time.Now()
		b.fake.WaitAnswer(t, b.fake.Press(r.chat, r.user, r.quote.ID, button(t, r.quote, "Confirm")))
	}
	for _, r := range runs {
		b.final(t, r.chat.ID, r.quote.ID)
	}
	elapsed := time.Since(runs[0].start)
	perChat, runsIn := map[int64]int{}, map[int64]int{}
	for _, r := range runs {
		perChat[r.chat.ID] += len(b.edits(r.chat.ID, r.quote.ID))
		runsIn[r.chat.ID]++
	}
	for chat, n := range perChat {
		// The chat's bucket and its refill, plus the finals, which never wait.
		limit := telegram.ChatBurst + int(elapsed.Seconds()*telegram.PrivatePerSecond) + runsIn[chat]
		if n > limit {
			t.Errorf("chat %d: %d edits in %s, limit %d", chat, n, elapsed.Round(time.Millisecond), limit)
		}
		t.Logf("chat %d: %d edits in %s; %d progress events in all chats", chat, n, elapsed.Round(time.Millisecond), events.Load())
	}
	if total := perChat[dm.ID] + perChat[group.ID]; int64(total)*10 > events.Load() {
		t.Errorf("%d edits for %d events: the burst was not coalesced", total, events.Load())
	}
	if n := b.fake.TooManyAnswered(); n != 0 {
		t.Errorf("%d calls broke Telegram's rate limits", n)
	}
	if t.Failed() {
		for _, c := range b.fake.Calls("") {
			if c.Method != "getUpdates" {
				t.Logf("%s %s %d %s %d %q", c.At.Format("05.000"), c.Method, c.Code, c.Fields["chat_id"], c.MessageID, c.Description)
			}
		}
	}
	b.bed.CheckLedger()
}
