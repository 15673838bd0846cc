package bots_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/console"
	"github.com/tokensforge/forgebot/bots/discord"
	"github.com/tokensforge/forgebot/bots/discord/discordtest"
	"github.com/tokensforge/forgebot/bots/telegram"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/bots/web"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
	"github.com/tokensforge/forgebot/research/market"
)

// viewText is everything a view shows: title, text, fields, buttons.
func viewText(v bots.View) string {
	var b strings.Builder
	b.WriteString(v.Title + "\n" + v.Text + "\n" + v.Notice + "\n")
	for _, f := range v.Fields {
		b.WriteString(f.Name + ": " + f.Value + "\n")
	}
	for _, row := range v.Buttons {
		for _, btn := range row {
			b.WriteString(btn.Label + "\n")
		}
	}
	if v.Report != nil {
		b.WriteString(bots.RenderReport(*v.Report))
	}
	return b.String()
}

// TestRouteErrorsReachChatAsClasses: routes that fail with a provider's
// text naming URLs, hosts and addresses (a refused key, a server error, a
// refused connection) end the run with a short class and a reference; the
// final message and the receipt page contain none of that text.
func TestRouteErrorsReachChatAsClasses(t *testing.T) {
	t.Parallel()
	leaky := "Incorrect API key for org-Zk42 at https://upstream.example.com:8443/v1; resolver 10.20.30.40:53"
	for _, tc := range []struct {
		name   string
		script llmtest.Response
		base   string // overrides the fake's URL (a refused connection)
		class  string
	}{
		{"refused key", llmtest.Error(401, leaky), "", "the route refused the key"},
		{"server error", llmtest.Error(503, leaky), "", "the model route had a server error"},
		{"connection refused", llmtest.Response{}, "http://127.0.0.1:1/v1", "the model route could not be reached"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newChat(t, testbed.Options{RoutesFor: func(url string) []llm.Route {
				if tc.base != "" {
					url = tc.base
				}
				return []llm.Route{{ID: "leaky", Kind: billing.RouteOfficial, Model: "gpt-leak", BaseURL: url, APIKey: "sk-test-leak9999",
					Price: billing.Price{InputPerM: billing.Micro, OutputPerM: 4 * billing.Micro}, Enabled: true}}
			}})
			c.b.LLM.SetDefault(tc.script)
			c.b.Fund(alice, billing.BucketCredit, billing.Micro)
			q := one(t, c.say(t, alice, "/research AAPL quick gpt-leak"))
			one(t, c.press(t, alice, button(t, q.View, "Confirm"), "m1"))
			final := c.screen.waitFinal(t, "m1")
			text := viewText(final)
			if !strings.Contains(text, tc.class+" (ref ") {
				t.Fatalf("final does not name the class %q with a reference:\n%s", tc.class, text)
			}
			receipt := receiptURL(t, final)
			srv := httptest.NewServer(web.Handler(web.Deps{Receipts: c.b.Store}))
			defer srv.Close()
			var pages []string
			for _, accept := range []string{"text/html", "application/json"} {
				req, _ := http.NewRequest("GET", srv.URL+"/r/"+receipt[strings.LastIndex(receipt, "/")+1:], nil)
				req.Header.Set("Accept", accept)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("receipt %s: %d %s", accept, resp.StatusCode, body)
				}
				pages = append(pages, string(body))
			}
			for where, s := range map[string]string{"final": text, "receipt page": pages[0], "receipt json": pages[1]} {
				for _, bad := range []string{"upstream.example.com", "https://", "10.20.30.40", "127.0.0.1", "org-Zk42", "Incorrect API key", "dial tcp", "connection refused", "sk-test"} {
					if strings.Contains(s, bad) {
						t.Errorf("%s contains %q:\n%s", where, bad, s)
					}
				}
			}
		})
	}
}

func receiptURL(t *testing.T, v bots.View) string {
	t.Helper()
	for _, row := range v.Buttons {
		for _, b := range row {
			if b.Label == "Receipt" {
				return b.URL
			}
		}
	}
	t.Fatalf("no receipt button in %+v", v.Buttons)
	return ""
}

// nasty is model output (and a user-supplied name) trying a right-to-left
// override, a terminal escape that clears the screen, a NUL and two
// mentions.
const nasty = "Bull \u202Eexe.gnp\u202C \x1b[2J\x00 @everyone <@123> ok"

// dirty reports what in s a surface must never show.
func dirty(s string) []string {
	var bad []string
	for _, c := range []string{"\u202E", "\u202C", "\x1b", "\x00"} {
		if strings.Contains(s, c) {
			bad = append(bad, fmt.Sprintf("%q", c))
		}
	}
	return bad
}

// TestModelOutputIsCleanOnEverySurface: a run whose model streams control
// and bidi characters and mentions ends with a clean report, and every
// adapter's rendering of it (and of a view whose user-supplied title is
// dirty) is clean: the console's terminal text, the messages the Telegram
// and Discord fakes receive; no mention pings (Telegram: a word joiner
// after @; Discord: allowed_mentions with nothing to parse on every message).
func TestModelOutputIsCleanOnEverySurface(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{RoutesFor: func(url string) []llm.Route {
		return []llm.Route{{ID: "api", Kind: billing.RouteOfficial, Model: "gpt-nasty", BaseURL: url, APIKey: "sk-test-nasty1111",
			Price: billing.Price{InputPerM: billing.Micro, OutputPerM: 4 * billing.Micro}, Enabled: true}}
	}})
	c.b.LLM.SetDefault(llmtest.Stream(nasty[:8], nasty[8:]))
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	q := one(t, c.say(t, alice, "/research AAPL quick gpt-nasty"))
	one(t, c.press(t, alice, button(t, q.View, "Confirm"), "m1"))
	final := c.screen.waitFinal(t, "m1")
	if !strings.Contains(viewText(final), "exe.gnp") || !strings.Contains(viewText(final), "@everyone") {
		t.Fatalf("the model's text is not in the final:\n%s", viewText(final))
	}
	if bad := dirty(viewText(final)); bad != nil {
		t.Fatalf("final view keeps %v:\n%q", bad, viewText(final))
	}
	named := bots.View{Kind: bots.KindInfo, Title: "Watchlist " + nasty, Text: nasty, Fields: []bots.Field{{Name: nasty, Value: nasty}},
		Buttons: [][]bots.Button{{{Label: nasty, Data: "x"}}}}

	// Console.
	for _, v := range []bots.View{final, named} {
		var out strings.Builder
		console.Render(&out, v)
		if bad := dirty(out.String()); bad != nil {
			t.Errorf("console shows %v:\n%q", bad, out.String())
		}
	}

	// Telegram.
	tg := telegramtest.New(t)
	tad, err := telegram.New(telegram.Config{Token: telegramtest.Token, APIURL: tg.URL}, c.conv)
	if err != nil {
		t.Fatal(err)
	}
	grp := telegramtest.Group(-1001, "traders")
	for _, v := range []bots.View{final, named} {
		if err := sendPaced(t, tad, research.Destination{Platform: telegram.Platform, ChatID: strconv.FormatInt(grp.ID, 10)}, v); err != nil {
			t.Fatalf("telegram send: %v", err)
		}
	}
	msgs := tg.Messages(grp.ID)
	if len(msgs) < 2 {
		t.Fatalf("telegram got %d messages", len(msgs))
	}
	for _, m := range msgs {
		if m.Kind == "photo" {
			m.File.Data = nil // the chart
		}
		for _, s := range []string{m.Text, m.Visible, m.Markup, string(m.File.Data)} {
			if bad := dirty(s); bad != nil {
				t.Errorf("telegram message shows %v:\n%q", bad, s)
			}
			if strings.Contains(s, "@everyone") {
				t.Errorf("telegram message would mention everyone:\n%q", s)
			}
		}
	}

	// Discord.
	dc := discordtest.New(t, discordtest.Options{})
	dad, err := discord.New(discord.Config{Token: dc.BotToken, AppID: dc.AppID, APIURL: dc.URL}, c.conv)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []bots.View{final, named} {
		if err := sendPaced(t, dad, research.Destination{Platform: discord.Platform, ChatID: "300000000000000001"}, v); err != nil {
			t.Fatalf("discord send: %v", err)
		}
	}
	texts := 0
	for _, r := range dc.Requests() {
		if !r.CarriesText {
			continue
		}
		texts++
		var am struct {
			Parse []string `json:"parse"`
			Users []string `json:"users"`
			Roles []string `json:"roles"`
		}
		if err := json.Unmarshal(r.Mentions, &am); err != nil || am.Parse == nil || len(am.Parse)+len(am.Users)+len(am.Roles) != 0 {
			t.Errorf("discord %s carries text with allowed_mentions %s", r.Route, r.Mentions)
		}
		var payload any
		_ = json.Unmarshal(r.Payload, &payload)
		decoded, _ := json.Marshal(payload) // JSON escapes undone by the round trip
		if bad := dirty(string(r.Payload)); bad != nil || strings.Contains(string(r.Payload), `\u001b`) || strings.Contains(string(r.Payload), `\u0000`) || strings.Contains(string(r.Payload), `\u202e`) {
			t.Errorf("discord payload shows %v:\n%s", bad, decoded)
		}
		for _, a := range r.Files {
			if strings.HasPrefix(a.ContentType, "image/") {
				continue // the chart
			}
			if bad := dirty(string(a.Data)); bad != nil {
				t.Errorf("discord attachment shows %v", bad)
			}
		}
	}
	if texts < 2 {
		t.Fatalf("discord got %d messages with text", texts)
	}
}

// sendPaced sends v, waiting out the adapter's own rate budget as the
// outbox would.
func sendPaced(t *testing.T, s bots.Sender, d research.Destination, v bots.View) error {
	for {
		_, err := s.Send(t.Context(), d, v)
		var ra *bots.RetryAfterError
		if !errors.As(err, &ra) {
			return err
		}
		select {
		case <-time.After(ra.Wait):
		case <-t.Context().Done():
			return err
		}
	}
}

// countingMarket counts the requests that reach the data provider.
type countingMarket struct {
	market.Provider
	mu    sync.Mutex
	calls int
	keys  []string
}

func (m *countingMarket) History(ctx context.Context, sym string, lb time.Duration) (market.Series, error) {
	m.mu.Lock()
	m.calls++
	m.keys = append(m.keys, fmt.Sprintf("%s/%s", sym, lb))
	m.mu.Unlock()
	return m.Provider.History(ctx, sym, lb)
}

func (m *countingMarket) n() int { m.mu.Lock(); defer m.mu.Unlock(); return m.calls }

// TestQuoteFlood: 30 deep quotes on three symbols from one user, as fast
// as they come. The first 10 (the per-minute allowance) are quoted, the
// other 20 get "Too many quotes" with when to try again, and hold nothing;
// the data provider behind the cache sees 4 requests (one per symbol, plus
// the SPY benchmark), where it saw 120 before. Another user is not
// affected.
func TestQuoteFlood(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{NoWorkers: true})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	upstream := &countingMarket{Provider: c.b.Market}
	c.b.Engine.Market = market.NewCache(upstream, market.CacheOptions{})
	quoted, limited, first := 0, 0, 0
	for i := range 30 {
		if i == 1 {
			first = upstream.n() // one quote's requests: its symbols (and the benchmark)
		}
		r := one(t, c.say(t, alice, "/research AAPL MSFT NVDA deep"))
		switch {
		case r.View.Kind == bots.KindQuote:
			quoted++
		case strings.Contains(r.View.Text, "Too many quotes: at most 10 a minute. Try again in "):
			limited++
		default:
			t.Fatalf("unexpected reply %+v", r.View)
		}
	}
	if quoted != 10 || limited != 20 {
		t.Fatalf("%d quoted, %d limited; want 10 and 20", quoted, limited)
	}
	if n := upstream.n(); n != first || n > 4 {
		t.Fatalf("the data provider saw %d requests for 30 quotes on 3 symbols (one quote made %d), want one per symbol: %q", n, first, upstream.keys)
	}
	if c.b.OpenHolds() != 0 {
		t.Fatal("a quote held money")
	}
	if r := one(t, c.say(t, bob, "/research AAPL deep")); r.View.Kind != bots.KindQuote {
		t.Fatalf("bob was limited by alice's flood: %+v", r.View)
	}
}

// TestConcurrentRunLimit: a user with MaxRunning runs going cannot confirm
// another until one ends; the refusal says so and holds nothing.
func TestConcurrentRunLimit(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{NoWorkers: true})
	c.conv.Limits.MaxRunning = 2
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	for i := range 3 {
		q := one(t, c.say(t, alice, "/research AAPL quick"))
		r := one(t, c.press(t, alice, button(t, q.View, "Confirm"), "m"+strconv.Itoa(i)))
		switch {
		case i < 2 && r.View.Kind != bots.KindProgress:
			t.Fatalf("confirm %d = %+v", i, r)
		case i == 2 && (!strings.Contains(r.Alert, "You have 2 runs going") || !r.Refused):
			t.Fatalf("the third confirm = %+v", r)
		}
	}
	if n := c.b.OpenHolds(); n != 2 {
		t.Fatalf("%d holds open, want 2", n)
	}
}

// TestRunLimitRace (both stores): ten confirms pressed at once by a user
// allowed three runs at a time: exactly three runs start (the limit is
// counted in the confirm's transaction, after the hold's account lock), the
// other seven are refused with the limit's message and hold nothing.
func TestRunLimitRace(t *testing.T) {
	t.Parallel()
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			t.Parallel()
			c := newChat(t, testbed.Options{Postgres: pg, NoWorkers: true})
			c.conv.Limits = bots.UserLimits{MaxRunning: 3, QuotesPerMinute: 100}
			c.b.Fund(alice, billing.BucketCredit, billing.Micro)
			const presses = 10
			var confirms []string
			for range presses {
				confirms = append(confirms, button(t, one(t, c.say(t, alice, "/research AAPL quick")).View, "Confirm"))
			}
			var (
				wg               sync.WaitGroup
				mu               sync.Mutex
				started, refused int
				start            = make(chan struct{})
			)
			for i, data := range confirms {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					r := one(t, c.press(t, alice, data, "m"+strconv.Itoa(i)))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case r.View.Kind == bots.KindProgress:
						started++
					case r.Refused && strings.Contains(r.Alert, "runs going, the most at once"):
						refused++
					default:
						t.Errorf("confirm %d answered %+v", i, r)
					}
				}()
			}
			close(start)
			wg.Wait()
			if started != 3 || refused != presses-3 {
				t.Fatalf("%d confirms started a run and %d were refused, want 3 and %d", started, refused, presses-3)
			}
			if n := c.b.OpenHolds(); n != 3 {
				t.Fatalf("%d holds open, want 3", n)
			}
			c.b.CheckLedger()
		})
	}
}
