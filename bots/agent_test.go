package bots_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/llm/llmtest"
)

// waitView waits for a view of a message that matches.
func (s *screen) waitView(t *testing.T, msg string, match func(bots.View) bool) bots.View {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		for _, v := range s.views[msg] {
			if match(v) {
				s.mu.Unlock()
				return v
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no matching view on message %s", msg)
		}
	}
}

func fieldsOf(v bots.View) map[string]string {
	out := map[string]string{}
	for _, f := range v.Fields {
		out[f.Name] = f.Value
	}
	return out
}

// TestAskConversation: /ask quotes an agent run with its cap, step limit,
// wrap-up reserve and ask-to-continue; confirmed, the offline agent runs to
// the end; the card showed each step and the spend against the cap; the
// final message has the question, the answer, the figures, the steps and
// the receipt, which lists every step.
func TestAskConversation(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{Pace: time.Millisecond})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	quote := one(t, c.say(t, alice, "/ask is NVDA overbought against the other semis? cap:0.50"))
	f := fieldsOf(quote.View)
	if quote.View.Kind != bots.KindQuote || !strings.Contains(quote.View.Title, "Ask: is NVDA overbought") {
		t.Fatalf("quote = %+v", quote.View)
	}
	if !strings.Contains(f["Cap"], "$0.50 cap") || !strings.Contains(f["Steps"], "at most 12 steps") || !strings.Contains(f["At the cap"], "wrap up") ||
		!strings.Contains(f["Ask to continue"], "80%") || !strings.Contains(f["Typical"], "estimate") {
		t.Fatalf("quote fields = %v", f)
	}
	if r := one(t, c.press(t, bob, button(t, quote.View, "Confirm"), "m1")); !r.Refused {
		t.Fatalf("bob confirming alice's question = %+v", r)
	}
	one(t, c.press(t, alice, button(t, quote.View, "Confirm"), "m1"))
	final := c.screen.waitFinal(t, "m1")
	for _, want := range []string{"Question: is NVDA overbought", "Answer", "RSI 14", "Steps", "tool: scan of semis", "model: answer", research_notice()} {
		if !strings.Contains(final.Text, want) {
			t.Errorf("final text lacks %q:\n%s", want, final.Text)
		}
	}
	if !strings.Contains(final.Title, "succeeded") || final.Image == nil || !strings.Contains(final.Fields[0].Value, "tool call(s)") {
		t.Fatalf("final = %s, chart %d bytes, cost %q", final.Title, len(final.Image), final.Fields[0].Value)
	}
	step := c.screen.waitView(t, "m1", func(v bots.View) bool {
		return v.Kind == bots.KindProgress && strings.Contains(v.Text, "of at most 12: ") && strings.Contains(v.Text, "of the $0.") && len(v.Buttons) > 0
	})
	if step.Buttons[0][0].Label != "Cancel" || step.Buttons[0][1].Label != "Pause" {
		t.Fatalf("a step's card = %+v", step)
	}
	usage := one(t, c.say(t, alice, "/usage"))
	id := strings.TrimSpace(usage.View.Text[strings.Index(usage.View.Text, "receipt ")+8:])
	rc := fieldsOf(one(t, c.say(t, alice, "/receipt "+id)).View)
	if !strings.Contains(rc["Steps"], "model: answer") || !strings.Contains(rc["Steps"], "tool: chart of") || !strings.Contains(rc["Notes"], "agent run") {
		t.Fatalf("receipt = %v", rc)
	}
	c.b.CheckSettled()
}

func research_notice() string { return "Not financial advice" }

// TestAskToContinueInChat: the card asks with Continue +$X, Wrap up now and
// Cancel; a stranger's press is refused and changes nothing; the owner's
// Continue holds more and the run goes on; on a second run, Wrap up now
// makes it answer.
func TestAskToContinueInChat(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{RoutesFor: func(url string) []llm.Route {
		return []llm.Route{{ID: "solo", Kind: billing.RouteOfficial, Model: "gpt-solo", BaseURL: url, APIKey: "sk-test-solo0000",
			Price: billing.Price{InputPerM: billing.Micro, OutputPerM: 4 * billing.Micro}, MaxContext: 128_000, Enabled: true}}
	}})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	c.b.LLM.SetDefault(llmtest.ToolCalls(llmtest.Call("price_summary", `{"symbol":"AAPL"}`)).WithUsage(4000, 500))
	c.b.LLM.SetResponder(func(q llmtest.Request) (llmtest.Response, bool) {
		if q.ToolChoice == "none" {
			return llmtest.Stream("AAPL, ", "as far ", "as I got."), true
		}
		return llmtest.Response{}, false
	})
	for _, answer := range []string{"Continue +", "Wrap up now"} {
		msg := "m-" + answer[:4]
		quote := one(t, c.conv.Handle(t.Context(), bots.Incoming{Identity: alice, Chat: group, Text: "/ask dig into AAPL cap:0.04 model:gpt-solo", MessageID: msg}))
		one(t, c.press(t, alice, button(t, quote.View, "Confirm"), msg))
		asking := c.screen.waitView(t, msg, func(v bots.View) bool {
			return len(v.Buttons) > 0 && strings.HasPrefix(v.Buttons[0][0].Label, "Continue +")
		})
		if !strings.Contains(asking.Text, "Paused to ask you") || asking.Buttons[0][1].Label != "Wrap up now" || asking.Buttons[0][2].Label != "Cancel" {
			t.Fatalf("asking card = %+v", asking)
		}
		holds := c.b.OpenHolds()
		for _, label := range []string{"Continue +", "Wrap up now", "Cancel"} {
			if r := one(t, c.press(t, bob, button(t, asking, label), msg)); !r.Refused || !strings.Contains(r.Alert, "Only the person") {
				t.Fatalf("bob's %s = %+v", label, r)
			}
		}
		if c.b.OpenHolds() != holds {
			t.Fatal("a stranger's press placed a hold")
		}
		r := one(t, c.press(t, alice, button(t, asking, answer), msg))
		if r.Refused || (answer == "Continue +" && !strings.Contains(r.Alert, "more held")) {
			t.Fatalf("alice's %s = %+v", answer, r)
		}
		if r := one(t, c.press(t, alice, button(t, asking, answer), msg)); !r.Refused {
			t.Fatalf("a second %s = %+v", answer, r)
		}
		final := c.screen.waitFinal(t, msg)
		if !strings.Contains(final.Title, "succeeded") || !strings.Contains(final.Text, "as far as I got") {
			t.Fatalf("final after %s = %s\n%s", answer, final.Title, final.Text)
		}
		if answer == "Continue +" && !strings.Contains(final.Fields[0].Value, "you added") {
			t.Fatalf("cost field after Continue = %q", final.Fields[0].Value)
		}
	}
	c.b.CheckSettled()
}
