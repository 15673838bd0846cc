package bots_test

import (
	"strings"
	"testing"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// field returns a view's field value by name.
func field(v bots.View, name string) string {
	for _, f := range v.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// TestReceiptByRunIDAndLink: /receipt takes the run id /usage lists first and
// a pasted receipt link, and the receipt says what was bought.
func TestReceiptByRunIDAndLink(t *testing.T) {
	t.Parallel()
	c := newChat(t, testbed.Options{})
	c.b.Fund(alice, billing.BucketCredit, billing.Micro)
	quote := one(t, c.say(t, alice, "/research NVDA AMD quick"))
	one(t, c.press(t, alice, button(t, quote.View, "Confirm"), "m1"))
	c.screen.waitFinal(t, "m1")
	usage := one(t, c.say(t, alice, "/usage"))
	runID := strings.Fields(strings.SplitN(usage.View.Text, "\n", 2)[0])[2]
	byRun := one(t, c.say(t, alice, "/receipt "+runID))
	if !strings.HasPrefix(byRun.View.Title, "Receipt ") || field(byRun.View, "Run") != runID {
		t.Fatalf("/receipt RUN (%s) = %+v", runID, byRun)
	}
	if got := field(byRun.View, "Bought"); got != "research NVDA, AMD (quick)" {
		t.Errorf("Bought = %q", got)
	}
	token := strings.TrimPrefix(byRun.View.Title, "Receipt ")
	for _, link := range []string{"https://forgebot.example.com/r/" + token, "http://127.0.0.1:8080/r/" + token + "/", "<http://x/r/" + token + "?a=1"} {
		link = strings.TrimPrefix(link, "<")
		if r := one(t, c.say(t, alice, "/receipt "+link)); r.View.Title != "Receipt "+token {
			t.Errorf("/receipt %s = %+v", link, r)
		}
	}
	if r := one(t, c.say(t, bob, "/receipt "+runID)); !strings.Contains(r.View.Text, "Not found") {
		t.Errorf("bob reading alice's run receipt = %+v", r)
	}
}
