package telegram

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/research"
)

// testClock is the budget's clock in these tests: it moves only when told.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
}

// spend makes one call as a caller that honours the budget: while refused,
// it moves the clock on by the wait the budget asks for. It returns the
// time waited and when the call was recorded.
func spend(t *testing.T, c *testClock, ask func() (time.Duration, bool)) (time.Duration, time.Time) {
	t.Helper()
	var waited time.Duration
	for range 100 {
		d, ok := ask()
		if ok {
			return waited, c.Now()
		}
		if d <= 0 {
			t.Fatalf("refused with a wait of %s", d)
		}
		c.Advance(d)
		waited += d
	}
	t.Fatal("the budget never allowed the call")
	return 0, time.Time{}
}

// bucketWait is the longest a reply or a final waits for a chat's token
// bucket alone: one token plus the margin, at PrivatePerSecond.
var bucketWait = time.Duration((1 + margin.Seconds()) / PrivatePerSecond * float64(time.Second))

// TestGroupMinute: once a group's calls of the last minute leave less than
// the reserve, progress edits are refused (and not counted) until the
// minute allows; finals still go on the reserve, and once the minute is
// full they wait exactly until its oldest call is a minute old, not for
// progress pacing. Progress in a group is paced; a private chat has no
// minute and no pacing, only its token bucket, whatever the group does.
func TestGroupMinute(t *testing.T) {
	t.Parallel()
	const grp, dm = int64(-100500), int64(1001)
	c := newTestClock()
	b := newBudget()
	b.now = c.Now
	var sent []time.Time // the group's calls, as Telegram would count them
	count := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.chats[grp].count(c.Now())
	}

	// A progress edit, then replies and finals up to the minute's room for
	// progress: 20 minus the reserve.
	_, at := spend(t, c, func() (time.Duration, bool) { return b.progressEdit(grp) })
	sent = append(sent, at)
	// Pacing: a second progress edit waits groupProgressEvery, a final does not.
	if d, ok := b.progressEdit(grp); ok || d != groupProgressEvery {
		t.Fatalf("a second progress edit at once = %v, %s; want refused for %s", ok, d, groupProgressEvery)
	}
	for len(sent) < GroupPerMinute-groupReserve {
		waited, at := spend(t, c, func() (time.Duration, bool) { return b.final(grp) })
		if waited > bucketWait {
			t.Fatalf("call %d waited %s, more than the chat's bucket (%s)", len(sent)+1, waited, bucketWait)
		}
		sent = append(sent, at)
	}

	// Progress is refused until the oldest call leaves the minute, however
	// often the outbox comes back (every deferStep), and refusals are not
	// counted as calls.
	windowWait := func(oldest time.Time) time.Duration { return oldest.Add(time.Minute + margin).Sub(c.Now()) }
	want := windowWait(sent[0])
	if d, ok := b.progressEdit(grp); ok || d != want {
		t.Fatalf("progress with %d calls in the minute = %v, %s; want refused for %s", len(sent), ok, d, want)
	}
	for range 8 {
		c.Advance(deferStep)
		if d, ok := b.progressEdit(grp); ok || d != windowWait(sent[0]) {
			t.Fatalf("progress retried = %v, %s; want refused for %s", ok, d, windowWait(sent[0]))
		}
	}
	if n := count(); n != len(sent) {
		t.Fatalf("%d calls counted in the minute, want %d: refusals were counted", n, len(sent))
	}

	// A private chat is untouched by the group's minute.
	if d, ok := b.final(dm); !ok {
		t.Fatalf("a private chat's final refused for %s while a group's minute is full", d)
	}

	// Finals use the reserve, waiting for the bucket only.
	for len(sent) < GroupPerMinute {
		waited, at := spend(t, c, func() (time.Duration, bool) { return b.final(grp) })
		if waited > bucketWait {
			t.Fatalf("final %d waited %s on the reserve, want at most %s", len(sent)+1, waited, bucketWait)
		}
		sent = append(sent, at)
	}
	if elapsed := c.Now().Sub(sent[0]); elapsed >= time.Minute {
		t.Fatalf("filling the minute took %s: the test does not reach the minute's limit", elapsed)
	}

	// The minute is full: a final waits exactly for its oldest call to be a
	// minute old (plus the margin), and goes then.
	want = windowWait(sent[0])
	if d, ok := b.final(grp); ok || d != want {
		t.Fatalf("a final in a full minute = %v, %s; want refused for %s", ok, d, want)
	}
	c.Advance(want)
	if d, ok := b.final(grp); !ok {
		t.Fatalf("the final was refused for %s more once the minute allowed it", d)
	}
	sent = append(sent[1:], c.Now())

	// Progress now waits until only GroupPerMinute-groupReserve-1 calls are
	// left in the minute.
	want = windowWait(sent[len(sent)-(GroupPerMinute-groupReserve)])
	if d, ok := b.progressEdit(grp); ok || d != want {
		t.Fatalf("progress after the final = %v, %s; want refused for %s", ok, d, want)
	}
	c.Advance(want)
	if d, ok := b.progressEdit(grp); !ok {
		t.Fatalf("progress refused for %s more once the minute allowed it", d)
	}

	// A private chat: far more than GroupPerMinute calls within a minute,
	// each waiting only for the bucket, and progress is not paced.
	c.Advance(time.Minute) // a full bucket
	start := c.Now()
	for i := range 2 * GroupPerMinute {
		if waited, _ := spend(t, c, func() (time.Duration, bool) { return b.final(dm) }); waited > bucketWait {
			t.Fatalf("private call %d waited %s, want at most %s", i+1, waited, bucketWait)
		}
	}
	if elapsed := c.Now().Sub(start); elapsed >= time.Minute {
		t.Fatalf("%d private calls took %s", 2*GroupPerMinute, elapsed)
	}
	c.Advance(time.Minute)
	spend(t, c, func() (time.Duration, bool) { return b.progressEdit(dm) })
	if waited, _ := spend(t, c, func() (time.Duration, bool) { return b.progressEdit(dm) }); waited >= groupProgressEvery {
		t.Fatalf("a private chat's second progress edit waited %s: paced like a group", waited)
	}
	b.mu.Lock()
	private := b.chats[dm]
	b.mu.Unlock()
	if private.progress != nil || len(private.window) != 0 {
		t.Fatalf("a private chat keeps a group's minute: %d calls", len(private.window))
	}
}

// nopConversation answers nothing; the adapter is only a sender here.
type nopConversation struct{}

func (nopConversation) Handle(context.Context, bots.Incoming) []bots.Reply { return nil }
func (nopConversation) EditRun(ctx context.Context, _ research.Destination, _ string, _ int64, edit func(context.Context) error) (bool, error) {
	return true, edit(ctx)
}

func (nopConversation) MoveRun(context.Context, string, billing.Identity, research.Destination) error {
	return nil
}

// attempt is one delivery the outbox made through the adapter.
type attempt struct {
	text  string
	final bool
	err   error
}

// observed is the adapter as the outbox's sender, reporting every edit it
// was asked for and how it ended.
type observed struct {
	*Adapter
	ctx context.Context
	out chan attempt
}

func (o observed) Edit(ctx context.Context, d research.Destination, v bots.View) error {
	err := o.Adapter.Edit(ctx, d, v)
	select {
	case o.out <- attempt{v.Text, v.Final, err}:
	case <-o.ctx.Done():
	}
	return err
}

// TestGroupMinuteDefersProgress: through the outbox, with a group's minute
// used up, progress edits are deferred with short waits and never reach
// Telegram; the outbox keeps only the latest, which goes as one edit when
// the minute allows; a final then goes on the reserve although progress is
// deferred again.
func TestGroupMinuteDefersProgress(t *testing.T) {
	t.Parallel()
	const grp = int64(-100600)
	fake := telegramtest.New(t)
	fake.SetLimits(&telegramtest.TelegramLimits)
	ad, err := New(Config{Token: telegramtest.Token, APIURL: fake.URL}, nopConversation{})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClock()
	ad.budget.now = c.Now
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ad.Stop(stop)
	})
	d := research.Destination{Platform: Platform, ChatID: strconv.FormatInt(grp, 10)}
	progress := func(text string) bots.View {
		return bots.View{Kind: bots.KindProgress, Title: "Research X (quick): running", Text: text}
	}

	id, err := ad.Send(ctx, d, progress("step 0"))
	if err != nil {
		t.Fatal(err)
	}
	d.MessageID = id
	sent := []time.Time{c.Now()}
	// Other messages in the group (replies, other runs' finals) use the rest
	// of the minute.
	for len(sent) < GroupPerMinute {
		_, at := spend(t, c, func() (time.Duration, bool) { return ad.budget.final(grp) })
		sent = append(sent, at)
	}

	ob := observed{Adapter: ad, ctx: ctx, out: make(chan attempt)}
	outbox := bots.NewOutbox(nil)
	outbox.Register(Platform, ob, Limits)
	go outbox.Run(ctx)
	// Every wait below ends by this deadline: a budget that keeps refusing
	// fails the test rather than hanging it.
	deadline := time.NewTimer(time.Minute) // generous: the suite shares two cores
	defer deadline.Stop()
	waiting := "the first attempt"
	next := func() attempt {
		t.Helper()
		select {
		case a := <-ob.out:
			return a
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", waiting)
			return attempt{}
		}
	}
	deferred := func(a attempt) {
		t.Helper()
		var ra *bots.RetryAfterError
		if !errors.As(a.err, &ra) || ra.Wait <= 0 || ra.Wait > deferStep {
			t.Fatalf("%q with the minute full = %v, want a RetryAfterError of at most %s", a.text, a.err, deferStep)
		}
	}

	outbox.Submit(d, progress("step 1"))
	deferred(next())
	waiting = "step 5 deferred"
	for i := 2; i <= 5; i++ {
		outbox.Submit(d, progress("step "+strconv.Itoa(i)))
	}
	for {
		a := next()
		deferred(a)
		if a.text == "step 5" {
			break
		}
	}
	if n := len(fake.Calls("editMessageText")); n != 0 {
		t.Fatalf("%d edits reached Telegram with the group's minute full", n)
	}

	// The minute leaves room for progress once its six oldest calls are a
	// minute old: only the latest view goes, once.
	c.Set(sent[GroupPerMinute-(GroupPerMinute-groupReserve)].Add(time.Minute + margin))
	waiting = "the latest progress sent once the minute allows"
	for {
		a := next()
		if a.err == nil {
			if a.text != "step 5" {
				t.Fatalf("the edit sent showed %q, want the latest, step 5", a.text)
			}
			break
		}
		deferred(a)
	}
	edits := fake.Calls("editMessageText")
	if len(edits) != 1 || !strings.Contains(edits[0].Fields["text"], "step 5") {
		t.Fatalf("%d edits, want one showing step 5: %v", len(edits), edits)
	}

	// Progress is deferred again (paced, and at the minute's room); a final
	// submitted meanwhile takes its place and goes at once on the reserve.
	outbox.Submit(d, progress("step 6"))
	deferred(next())
	waiting = "the final sent on the reserve"
	outbox.Submit(d, bots.View{Kind: bots.KindFinal, Final: true, Title: "Research X: succeeded", Text: "all done", Notice: research.Notice})
	for {
		a := next()
		if a.final {
			if a.err != nil {
				t.Fatalf("the final = %v, want sent on the reserve", a.err)
			}
			break
		}
		deferred(a)
	}
	m, _ := fake.Message(grp, mustAtoi(t, id))
	if !strings.Contains(m.Visible, "all done") || len(fake.Calls("editMessageText")) != 2 {
		t.Fatalf("the message shows %q after %d edits; want the final after 2", m.Visible, len(fake.Calls("editMessageText")))
	}
	if n := fake.TooManyAnswered(); n != 0 {
		t.Errorf("%d calls broke Telegram's rate limits", n)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
