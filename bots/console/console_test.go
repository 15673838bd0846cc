package console

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// TestFinalKeepsQuoteChoices: a run's final view ends that run's numbered
// choices, but not those of a quote shown meanwhile.
func TestFinalKeepsQuoteChoices(t *testing.T) {
	var out bytes.Buffer
	c := &Console{Out: &out}
	d := research.Destination{Platform: Platform}
	send := func(v bots.View) {
		t.Helper()
		if _, err := c.Send(t.Context(), d, v); err != nil {
			t.Fatal(err)
		}
	}
	final := bots.View{Kind: bots.KindFinal, Final: true, Title: "Research AAPL: succeeded",
		Buttons: [][]bots.Button{{{Label: "Receipt", URL: "http://x/r/1"}}}}

	send(bots.View{Kind: bots.KindProgress, Buttons: [][]bots.Button{{{Label: "Cancel", Data: "r:run1:cancel"}}}})
	send(final)
	if len(c.choices) != 0 {
		t.Fatalf("after the run's final, choices = %v", c.choices)
	}
	send(bots.View{Kind: bots.KindQuote, Buttons: [][]bots.Button{{{Label: "Confirm", Data: "q:quote2:confirm"}}}})
	send(final) // another run ends while the quote is read
	if len(c.choices) != 1 || c.choices[0] != "q:quote2:confirm" {
		t.Fatalf("the quote's choices = %v", c.choices)
	}
}

// TestFinalChoicesKeyedByRun: a run's final that offers choices of its own
// (a low balance's top-ups) while a quote is open lists them under keys named
// for its run (1.1, 1.2), and the numbers stay the quote's.
func TestFinalChoicesKeyedByRun(t *testing.T) {
	var out bytes.Buffer
	c := &Console{Out: &out}
	d := research.Destination{Platform: Platform}
	id, err := c.Send(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "Research AAPL: running",
		Buttons: [][]bots.Button{{{Label: "Cancel", Data: "r:run1:cancel"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(t.Context(), d, bots.View{Kind: bots.KindQuote, Buttons: [][]bots.Button{{{Label: "Confirm", Data: "q:quote2:confirm"}, {Label: "Cancel", Data: "q:quote2:cancel"}}}}); err != nil {
		t.Fatal(err)
	}
	final := bots.View{Kind: bots.KindFinal, Final: true, Title: "Research AAPL: succeeded", Buttons: [][]bots.Button{
		{{Label: "Receipt", URL: "http://x/r/1"}},
		{{Label: "Top up $1", Data: "t:credit:1"}, {Label: "Top up $5", Data: "t:credit:5"}}}}
	d.MessageID = id
	if err := c.Edit(t.Context(), d, final); err != nil {
		t.Fatal(err)
	}
	if len(c.choices) != 2 || c.choices[0] != "q:quote2:confirm" {
		t.Fatalf("after the final, the numbers are %v, want the quote's", c.choices)
	}
	if c.runKeys["1.1"] != "t:credit:1" || c.runKeys["1.2"] != "t:credit:5" {
		t.Fatalf("the final's keys = %v", c.runKeys)
	}
	if !strings.Contains(out.String(), "[1.1] Top up $1   [1.2] Top up $5") {
		t.Fatalf("the final's choices are not listed by their keys:\n%s", out.String())
	}
	if _, ok := c.runKeys["c1"]; ok {
		t.Fatal("the ended run's cancel key is still offered")
	}
}

// TestQuitNamesUnfinishedRuns: quitting while a run is still going says so,
// and that it is not lost; after its final, quitting says nothing of it.
func TestQuitNamesUnfinishedRuns(t *testing.T) {
	var out bytes.Buffer
	c := &Console{Out: &out}
	d := research.Destination{Platform: Platform}
	id, err := c.Send(t.Context(), d, bots.View{Kind: bots.KindProgress, Title: "Research AAPL: queued",
		Buttons: [][]bots.Button{{{Label: "Cancel", Data: "r:run1:cancel"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(t.Context(), strings.NewReader("quit\n")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Not finished: run 1. Nothing is lost") {
		t.Fatalf("quit with a run going:\n%s", out.String())
	}
	d.MessageID = id
	if err := c.Edit(t.Context(), d, bots.View{Kind: bots.KindFinal, Final: true, Title: "Research AAPL: succeeded"}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := c.Run(t.Context(), strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "Not finished") {
		t.Fatalf("quit after the run's final:\n%s", out.String())
	}
}
