package console

import (
	"bytes"
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
