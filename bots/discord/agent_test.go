package discord_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots/discord/discordtest"
	"github.com/tokensforge/forgebot/internal/testbed"
)

// TestAskSlashCommand: /ask with its question and cap options quotes an
// agent run; confirmed, the public progress message asks to continue at the
// cap; a member's press is refused ephemerally; the owner's Continue goes
// on to the final answer with its steps.
func TestAskSlashCommand(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{Pace: time.Millisecond}})
	b.bed.Fund(identity(alice), billing.BucketCredit, billing.Micro)
	qin, _ := b.command(t, alice, "ask", discordtest.String("question", "is NVDA overbought against the other semis?"), discordtest.String("cap", "0.002"))
	quote := b.original(t, qin)
	if !strings.Contains(title(quote), "Ask: is NVDA overbought") || !strings.Contains(text(quote), "$0.002000 cap") {
		t.Fatalf("quote = %q\n%s", title(quote), text(quote))
	}
	b.click(t, alice, quote, button(t, quote, "Confirm"))
	asking := b.message(t, "the asking progress message", func(m discordtest.Message) bool {
		return m.Source == "channel" && strings.Contains(strings.Join(labels(m), "|"), "Continue +")
	})
	if got := strings.Join(labels(asking), "|"); got != "Continue +$0.01|Wrap up now|Cancel" {
		t.Fatalf("asking buttons = %s", got)
	}
	_, cb := b.click(t, bob, asking, button(t, asking, "Continue"))
	if flags, content := callbackData(t, cb); flags&64 == 0 || !strings.Contains(content, "Only the person") {
		t.Fatalf("bob's Continue: flags %d %q", flags, content)
	}
	_, cb = b.click(t, alice, asking, button(t, asking, "Continue"))
	if _, content := callbackData(t, cb); !strings.Contains(content, "more held") {
		t.Fatalf("alice's Continue: %q", content)
	}
	final := b.channelMessage(t, asking.ID, "the final answer", func(m discordtest.Message) bool { return strings.Contains(title(m), "succeeded") })
	for _, want := range []string{"Question: is NVDA overbought", "Answer", "Steps", "model: answer"} {
		if !strings.Contains(text(final), want) {
			t.Errorf("final lacks %q:\n%s", want, text(final))
		}
	}
	if err := b.ob.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.bed.CheckSettled()
}
