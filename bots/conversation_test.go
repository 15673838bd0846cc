package bots_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/market"
)

var (
	alice = billing.Identity{Platform: "telegram", ExternalID: "42"}
	bob   = billing.Identity{Platform: "telegram", ExternalID: "43"}
	group = bots.Chat{Platform: "test", ID: "-100", Group: true}
)

// screen is a bots.Sender that records what each message shows.
type screen struct {
	mu      sync.Mutex
	views   map[string][]bots.View // by message id
	changed chan struct{}
	nextID  int
}

func newScreen() *screen {
	return &screen{views: map[string][]bots.View{}, changed: make(chan struct{})}
}

func (s *screen) Send(_ context.Context, d research.Destination, v bots.View) (string, error) {
	s.mu.Lock()
	s.nextID++
	id := "new-" + string(rune('0'+s.nextID))
	s.mu.Unlock()
	return id, s.Edit(context.Background(), research.Destination{MessageID: id}, v)
}

func (s *screen) Edit(_ context.Context, d research.Destination, v bots.View) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.views[d.MessageID] = append(s.views[d.MessageID], v)
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// finalWait bounds a wait for a run's final view: generous, because a quick
// run draws a chart, which under -race with every package's tests sharing
// two cores can take tens of seconds; a run that hangs still fails.
const finalWait = time.Minute

// waitFinal waits for the final view of a message.
func (s *screen) waitFinal(t *testing.T, msg string) bots.View {
	t.Helper()
	deadline := time.After(finalWait)
	for {
		s.mu.Lock()
		for _, v := range s.views[msg] {
			if v.Final {
				s.mu.Unlock()
				return v
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no final view on message %s", msg)
		}
	}
}

type chat struct {
	b      *testbed.Bed
	conv   *bots.Conversation
	screen *screen
}

func newChat(t *testing.T, opts testbed.Options) *chat {
	b := testbed.New(t, opts)
	ob := bots.NewOutbox(nil)
	scr := newScreen()
	ob.Register("test", scr, bots.Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go ob.Run(ctx)
	conv := &bots.Conversation{Engine: b.Engine, Ledger: b.Store, Runs: b.Store, Outbox: ob, TopUpHint: "Top up at example.test."}
	b.Engine.Sink = conv
	return &chat{b: b, conv: conv, screen: scr}
}

func (c *chat) say(t *testing.T, who billing.Identity, text string) []bots.Reply {
	t.Helper()
	return c.conv.Handle(t.Context(), bots.Incoming{Identity: who, Chat: group, Text: text, MessageID: "m1"})
}

func (c *chat) press(t *testing.T, who billing.Identity, data, msg string) []bots.Reply {
	t.Helper()
	return c.conv.Handle(t.Context(), bots.Incoming{Identity: who, Chat: group, Button: data, MessageID: msg})
}

func button(t *testing.T, v bots.View, label string) string {
	t.Helper()
	for _, row := range v.Buttons {
		for _, b := range row {
			if strings.HasPrefix(b.Label, label) {
				if len(b.Data) > 60 {
					t.Fatalf("payload %q is %d bytes", b.Data, len(b.Data))
				}
				return b.Data
			}
		}
	}
	t.Fatalf("no %q button in %+v", label, v.Buttons)
	return ""
}

func one(t *testing.T, rs []bots.Reply) bots.Reply {
	t.Helper()
	if len(rs) != 1 {
		t.Fatalf("%d replies, want 1: %+v", len(rs), rs)
	}
	return rs[0]
}

func TestResearchConversation(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)

	quote := one(t, c.say(t, alice, "/research@forgebot_bot NVDA,amd quick"))
	if quote.View.Kind != bots.KindQuote || !strings.Contains(quote.View.Title, "NVDA, AMD") {
		t.Fatalf("quote = %+v", quote.View)
	}
	fields := map[string]string{}
	for _, f := range quote.View.Fields {
		fields[f.Name] = f.Value
	}
	for _, name := range []string{"Model", "Route", "Paid from", "Estimated tokens", "Estimated cost", "Expected runtime", "Plan", "Retries", "Fallback", "A failed request costs", "Cancelling", "At the cap", "If it runs out of time", "Receipt"} {
		if fields[name] == "" {
			t.Errorf("quote has no %q", name)
		}
	}
	if !strings.Contains(fields["Paid from"], "Credit: $1.00 available") || !strings.Contains(fields["Market data"], "SYNTHETIC") ||
		!strings.Contains(fields["Plan"], "6 months of daily data") || !strings.Contains(fields["Plan"], "up to 900 output tokens") {
		t.Errorf("quote fields = %v", fields)
	}

	// Bob cannot confirm Alice's quote; nothing is held.
	if r := one(t, c.press(t, bob, button(t, quote.View, "Confirm"), "m1")); !strings.Contains(r.Alert, "Only the person") || !r.Refused {
		t.Fatalf("bob's confirm = %+v", r)
	}
	if c.b.OpenHolds() != 0 {
		t.Fatal("bob's press placed a hold")
	}
	// Changing depth re-quotes.
	deep := one(t, c.press(t, alice, button(t, quote.View, "Standard"), "m1"))
	if !deep.Edit || !strings.Contains(deep.View.Title, "standard") {
		t.Fatalf("depth change = %+v", deep)
	}
	// The old quote is closed.
	if r := one(t, c.press(t, alice, button(t, quote.View, "Confirm"), "m1")); !strings.Contains(r.Alert, "replaced") || c.b.OpenHolds() != 0 {
		t.Fatalf("confirming a replaced quote = %+v", r)
	}
	conf := one(t, c.press(t, alice, button(t, deep.View, "Confirm"), "m1"))
	if !conf.Edit || conf.View.Kind != bots.KindProgress || !strings.Contains(conf.Alert, "held from credit") {
		t.Fatalf("confirm = %+v", conf)
	}
	// A second press does not run twice.
	if r := one(t, c.press(t, alice, button(t, deep.View, "Confirm"), "m1")); r.Alert != "Already confirmed." {
		t.Fatalf("second confirm = %+v", r)
	}
	final := c.screen.waitFinal(t, "m1")
	if !strings.Contains(final.Title, "succeeded") || final.Image == nil || final.Notice != research.Notice ||
		!strings.Contains(final.Text, "NVDA") || !strings.Contains(final.Text, research.Notice) {
		t.Fatalf("final view = %+v", final)
	}
	if !strings.Contains(final.Fields[0].Value, "ledger entry") || !strings.Contains(final.Fields[0].Value, "from your Credit") {
		t.Fatalf("cost field = %q", final.Fields[0].Value)
	}
	if final.Buttons[0][0].URL == "" {
		t.Fatal("no receipt link")
	}
	// Progress views came before, with Cancel and Pause buttons.
	c.screen.mu.Lock()
	views := c.screen.views["m1"]
	c.screen.mu.Unlock()
	if len(views) < 2 || views[0].Kind != bots.KindProgress || views[0].Buttons[0][0].Label != "Cancel" {
		t.Fatalf("progress views = %+v", views)
	}

	usage := one(t, c.say(t, alice, "/usage"))
	if !strings.Contains(usage.View.Text, "succeeded") {
		t.Fatalf("/usage = %q", usage.View.Text)
	}
	id := usage.View.Text[strings.Index(usage.View.Text, "receipt ")+8:]
	id = strings.TrimSpace(id)
	if r := one(t, c.say(t, alice, "/receipt "+id)); r.View.Title != "Receipt "+id {
		t.Fatalf("/receipt = %+v", r)
	}
	if r := one(t, c.say(t, bob, "/receipt "+id)); !strings.Contains(r.View.Text, "Not found") {
		t.Fatalf("bob reading alice's receipt = %+v", r)
	}
	bal := one(t, c.say(t, alice, "/balance"))
	if !strings.Contains(bal.View.Fields[0].Value, "held") || bal.View.Fields[0].Value == "" {
		t.Fatalf("/balance = %+v", bal.View)
	}
	c.b.CheckLedger()
}

func TestCancelButtons(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{Pace: 2 * time.Millisecond})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	quote := one(t, c.say(t, alice, "/research AAPL MSFT standard"))
	// No other route serves the offline model: no fallback choice is offered
	// (issue 15; consenting used to re-quote to "no other route serves this model").
	for _, row := range quote.View.Buttons {
		for _, b := range row {
			if strings.Contains(b.Label, "other-bucket") {
				t.Fatalf("fallback choice %q offered with no other route", b.Label)
			}
		}
	}
	conf := one(t, c.press(t, alice, button(t, quote.View, "Confirm"), "m1"))
	cancel := button(t, conf.View, "Cancel")
	if r := one(t, c.press(t, bob, button(t, conf.View, "Pause"), "m1")); !strings.Contains(r.Alert, "Only the person") {
		t.Fatalf("bob's pause = %+v", r)
	}
	if r := one(t, c.press(t, alice, button(t, conf.View, "Pause"), "m1")); !strings.Contains(r.Alert, "Pausing") {
		t.Fatalf("pause = %+v", r)
	}
	if r := one(t, c.press(t, alice, runButtonOf(t, c, "Resume"), "m1")); !strings.Contains(r.Alert, "Resuming") {
		t.Fatalf("resume = %+v", r)
	}
	if r := one(t, c.press(t, bob, cancel, "m1")); !strings.Contains(r.Alert, "Only the person") {
		t.Fatalf("bob's cancel = %+v", r)
	}
	if r := one(t, c.press(t, alice, cancel, "m1")); !strings.Contains(r.Alert, "Cancelling") || r.Refused {
		t.Fatalf("alice's cancel = %+v", r)
	}
	final := c.screen.waitFinal(t, "m1")
	if !strings.Contains(final.Title, "cancelled") {
		t.Fatalf("final = %+v", final)
	}
	c.b.CheckSettled()
}

func TestGarbageAndRefusals(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{NoWorkers: true})
	c.b.Fund(alice, billing.BucketCredit, 50) // $0.00005: not enough for a run
	quote := one(t, c.say(t, alice, "/research AAPL"))
	if !strings.Contains(quote.View.Text, "Not enough") || strings.Contains(quote.View.Text, "Confirm to hold") {
		t.Fatalf("short quote = %+v", quote.View)
	}
	for _, row := range quote.View.Buttons {
		for _, b := range row {
			if strings.HasPrefix(b.Label, "Confirm") {
				t.Fatal("a quote without funds offers Confirm")
			}
		}
	}
	for _, data := range []string{"", "x", "q:short:confirm", "q:qAAAAAAAAAAAAAAAA:confirm", "r:rAAAAAAAAAAAAAAAA:cancel",
		"q:qAAAAAAAAAAAAAAAA:drop", "r:qAAAAAAAAAAAAAAAA:cancel", strings.Repeat("q", 80), "q:../../etc:confirm"} {
		rs := c.press(t, alice, data, "m1")
		if data == "" {
			rs = c.conv.Handle(t.Context(), bots.Incoming{Identity: alice, Chat: group, Button: "\x00", MessageID: "m1"})
		}
		if r := one(t, rs); r.Alert == "" || strings.Contains(r.Alert, "ref ") {
			t.Errorf("payload %q: %+v, want a plain refusal", data, r)
		}
	}
	for text, want := range map[string]string{
		"/research":               "Name at least one symbol",
		"/research A B C D quick": "up to 3 symbols",
		"/research '; DROP TABLE": "symbol",
		"/scan":                   "Usage: /scan",
		"/scan nowhere":           "unknown watchlist",
		"/receipt":                "Usage: /receipt",
		"/receipt abc":            "Not found",
		"/cancel":                 "no run in progress",
		"/frobnicate":             "Unknown command",
		"hello":                   "Commands start with /",
	} {
		r := one(t, c.say(t, alice, text))
		if r.View.Kind != bots.KindError || !strings.Contains(r.View.Text, want) {
			t.Errorf("%q = %+v, want an error with %q", text, r.View, want)
		}
	}
	for _, cmd := range []string{"/help", "/models"} {
		if r := one(t, c.say(t, bob, cmd)); r.View.Kind != bots.KindInfo || r.View.Text == "" {
			t.Errorf("%s = %+v", cmd, r.View)
		}
	}
	if c.b.OpenHolds() != 0 {
		t.Fatal("refusals placed a hold")
	}
}

func TestLinkAcrossPlatforms(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{NoWorkers: true})
	c.b.Fund(alice, billing.BucketCredit, 3*billing.Micro)
	onDiscord := billing.Identity{Platform: "discord", ExternalID: "9001"}
	r := one(t, c.say(t, alice, "/link"))
	text := r.View.Text
	code := strings.Fields(text[strings.Index(text, "/link ")+6:])[0]
	if len(code) != 8 {
		t.Fatalf("code %q from %q", code, text)
	}
	if r := one(t, c.say(t, bob, "/link "+code)); !strings.Contains(r.View.Text, "other platform") {
		t.Fatalf("same-platform redeem = %+v", r.View)
	}
	if r := one(t, c.say(t, onDiscord, "/link ZZZZZZZZ")); !strings.Contains(r.View.Text, "unknown, used or expired") {
		t.Fatalf("wrong code = %+v", r.View)
	}
	if r := one(t, c.say(t, onDiscord, "/link "+strings.ToLower(code))); !strings.Contains(r.View.Text, "Linked") {
		t.Fatalf("redeem = %+v", r.View)
	}
	if r := one(t, c.say(t, onDiscord, "/link "+code)); !strings.Contains(r.View.Text, "unknown, used or expired") {
		t.Fatalf("second use = %+v", r.View)
	}
	bal := one(t, c.say(t, onDiscord, "/balance"))
	if !strings.Contains(bal.View.Fields[0].Value, "$3.00 available") {
		t.Fatalf("linked balance = %+v", bal.View.Fields)
	}
	// The linked identity pays from the same wallet.
	q := one(t, c.say(t, onDiscord, "/research AAPL"))
	if !strings.Contains(q.View.Text, "Confirm to hold") {
		t.Fatalf("linked quote = %+v", q.View)
	}
	one(t, c.press(t, onDiscord, button(t, q.View, "Confirm"), "m1"))
	acc, _ := c.b.Store.AccountOf(t.Context(), alice)
	bals, _ := c.b.Store.Balances(t.Context(), acc)
	if bals[billing.BucketCredit].Held == 0 {
		t.Fatal("the linked identity's run did not hold from the shared wallet")
	}
	for range 10 {
		c.say(t, onDiscord, "/link AAAAAAAA")
	}
	if r := one(t, c.say(t, onDiscord, "/link AAAAAAAA")); !strings.Contains(r.View.Text, "Too many attempts") {
		t.Fatalf("guessing not limited: %+v", r.View)
	}
}

func TestWatchlistsAndScan(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	if r := one(t, c.say(t, alice, "/watchlist add chips NVDA,amd AVGO")); !strings.Contains(r.View.Text, "chips: NVDA AMD AVGO") {
		t.Fatalf("add = %+v", r.View)
	}
	if r := one(t, c.say(t, alice, "/watchlist remove chips AMD")); !strings.Contains(r.View.Text, "chips: NVDA AVGO") {
		t.Fatalf("remove = %+v", r.View)
	}
	show := one(t, c.say(t, alice, "/watchlist show"))
	if !strings.Contains(show.View.Text, "chips: NVDA AVGO") || !strings.Contains(show.View.Text, "us-megacaps") {
		t.Fatalf("show = %+v", show.View)
	}
	if r := one(t, c.say(t, bob, "/watchlist show")); strings.Contains(r.View.Text, "chips") {
		t.Fatal("bob sees alice's watchlist")
	}
	for text, want := range map[string]string{
		"/watchlist add Bad_Name AAPL":   "lowercase",
		"/watchlist add us-megacaps X":   "is a preset",
		"/watchlist add x ../etc":        "symbol",
		"/watchlist remove nothing AAPL": "no watchlist",
		"/watchlist frob":                "Usage",
	} {
		if r := one(t, c.say(t, alice, text)); r.View.Kind != bots.KindError || !strings.Contains(r.View.Text, want) {
			t.Errorf("%q = %+v, want %q", text, r.View, want)
		}
	}
	q := one(t, c.say(t, alice, "/scan chips quick csv"))
	if q.View.Kind != bots.KindQuote || !strings.Contains(q.View.Title, "scan of chips") {
		t.Fatalf("scan quote = %+v", q.View)
	}
	one(t, c.press(t, alice, button(t, q.View, "Confirm"), "m1"))
	final := c.screen.waitFinal(t, "m1")
	if !strings.Contains(final.Title, "Scan chips") || !strings.Contains(final.Title, "succeeded") {
		t.Fatalf("scan final = %+v: %s", final.Title, final.Text)
	}
	// The answer ranks every watchlist symbol in a table, says why the top ones were picked, and, asked
	// for csv, attaches the table as a file.
	csvText := string(final.File)
	if final.Report == nil || len(final.Report.Scan) != 2 || !strings.Contains(final.Text, "Ranked watchlist (2 symbols)") ||
		!strings.Contains(final.Text, "picked: ") || !strings.HasPrefix(csvText, "rank,symbol,as_of,close") ||
		strings.Count(csvText, "\n") != 3 || !strings.HasSuffix(final.FileName, ".csv") {
		t.Fatalf("scan table: %+v\n%s\n%s", final.Report, final.Text, csvText)
	}
	for _, sym := range []string{"NVDA", "AVGO"} {
		if !strings.Contains(csvText, ","+sym+",") {
			t.Errorf("CSV lacks %s:\n%s", sym, csvText)
		}
	}
	if r := one(t, c.say(t, alice, "/watchlist remove chips")); !strings.Contains(r.View.Text, "removed") {
		t.Fatalf("delete = %+v", r.View)
	}
	c.b.CheckLedger()
}

// runButtonOf finds a button on the latest view the screen shows for m1.
func runButtonOf(t *testing.T, c *chat, label string) string {
	t.Helper()
	deadline := time.After(finalWait)
	for {
		c.screen.mu.Lock()
		views := c.screen.views["m1"]
		ch := c.screen.changed
		c.screen.mu.Unlock()
		if n := len(views); n > 0 {
			for _, row := range views[n-1].Buttons {
				for _, b := range row {
					if b.Label == label {
						return b.Data
					}
				}
			}
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no %q button on m1", label)
		}
	}
}

// TestRefusedDepthChangeKeepsQuote: a depth the request does not fit gets a
// clear message, and the quote on screen stays open and confirmable.
func TestRefusedDepthChangeKeepsQuote(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	quote := one(t, c.say(t, alice, "/research AAPL NVDA MSFT AMD standard"))
	if quote.View.Kind != bots.KindQuote {
		t.Fatalf("quote = %+v", quote.View)
	}
	r := one(t, c.press(t, alice, button(t, quote.View, "Quick"), "m1"))
	if r.Edit || !strings.Contains(r.Alert, "up to 3 symbols") {
		t.Fatalf("quick with 4 symbols = %+v", r)
	}
	conf := one(t, c.press(t, alice, button(t, quote.View, "Confirm"), "m1"))
	if conf.View.Kind != bots.KindProgress {
		t.Fatalf("confirming the kept quote = %+v", conf)
	}
	c.screen.waitFinal(t, "m1")
	c.b.CheckSettled()
}

// fieldOf is the value of a view's field by name.
func fieldOf(v bots.View, name string) string {
	for _, f := range v.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// failingMarket answers every fetch with a provider error.
type failingMarket struct {
	market.Provider
	err error
}

func (m failingMarket) History(context.Context, string, time.Duration) (market.Series, error) {
	return market.Series{}, m.err
}

// TestMarketOutageAtQuote: a provider that is rate limited gets a clear
// message naming the symbol and the failure's class with a reference, and
// nothing is held.
func TestMarketOutageAtQuote(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{NoWorkers: true})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	c.b.Engine.Market = failingMarket{Provider: c.b.Market, err: market.ErrRateLimited}
	r := one(t, c.say(t, alice, "/research AAPL"))
	if r.View.Kind != bots.KindError || !strings.Contains(r.View.Text, "Market data is unavailable") ||
		!strings.Contains(r.View.Text, "AAPL") || !strings.Contains(r.View.Text, "rate limited") || !strings.Contains(r.View.Text, "(ref ") {
		t.Fatalf("reply = %+v", r.View)
	}
	if c.b.OpenHolds() != 0 {
		t.Fatal("an outage placed a hold")
	}
}

// TestModelWords: a known model is taken as the model, with or without
// "model:"; an unknown one is refused, never quoted as a ticker.
func TestModelWords(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{NoWorkers: true})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	for _, tc := range []struct{ say, want string }{
		{"/research NVDA claude-9", `Unknown model "claude-9"`},
		{"/research NVDA gpt-4o", `Unknown model "gpt-4o"`},
		{"/research NVDA model:nope", `Unknown model "nope"`},
	} {
		r := one(t, c.say(t, alice, tc.say))
		if r.View.Kind != bots.KindError || !strings.Contains(r.View.Text, tc.want) {
			t.Errorf("%s = %+v", tc.say, r.View)
		}
	}
	for _, say := range []string{"/research NVDA model:offline-analyst", "/research NVDA offline-analyst", "/research BRK-B O"} {
		r := one(t, c.say(t, alice, say))
		if r.View.Kind != bots.KindQuote {
			t.Errorf("%s = %+v", say, r.View)
		}
	}
	if c.b.OpenHolds() != 0 {
		t.Fatal("a quote placed a hold")
	}
}
