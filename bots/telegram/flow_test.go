package telegram_test

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/internal/testbed"
	"github.com/tokensforge/forgebot/research"
)

// TestResearchToCompletion: /research gives a quote with an inline keyboard;
// Confirm turns that message into the progress message, edited in plain
// text; the run ends in an HTML final with the charge, the notice and a
// receipt link, and the chart as a photo replying to it.
func TestResearchToCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{Pace: 6 * time.Millisecond}, start: true})
	b.bed.Fund(who(alice), billing.BucketCredit, billing.Micro)
	dm := telegramtest.Private(alice)

	// Start published the commands and cleared any webhook for polling.
	var cmds []struct{ Command, Description string }
	if err := json.Unmarshal([]byte(b.fake.Commands()), &cmds); err != nil || len(cmds) != len(bots.Commands) || cmds[0].Command != "research" {
		t.Fatalf("commands = %s (%v)", b.fake.Commands(), err)
	}
	if len(b.fake.Calls("deleteWebhook")) != 1 {
		t.Error("polling started without deleting a webhook")
	}

	b.fake.SendText(dm, alice, "/research NVDA,AMD standard")
	quote := b.reply(t, dm.ID, "Quote: standard research on NVDA, AMD")
	if quote.ParseMode != "HTML" || !strings.HasPrefix(quote.Text, "<b>Quote: standard research on NVDA, AMD</b>") {
		t.Fatalf("quote = %q (%s)", quote.Text, quote.ParseMode)
	}
	call := b.fake.WaitCall(t, wait, "sendMessage", func(c telegramtest.Call) bool { return c.MessageID == quote.ID })
	if strings.Contains(call.Fields["reply_markup"], "copy_text") {
		t.Fatalf("reply_markup carries copy_text: %s", call.Fields["reply_markup"])
	}
	var labels []string
	for _, btn := range quote.Buttons() {
		labels = append(labels, btn.Text)
		if len(btn.CallbackData) > 64 || btn.CallbackData == "" {
			t.Errorf("button %q has callback_data %q", btn.Text, btn.CallbackData)
		}
	}
	if got := strings.Join(labels, "|"); !strings.HasPrefix(got, "Confirm $") || !strings.HasSuffix(got, "|Cancel|Quick|Deep|Agent") { // no other route: no fallback choice (issue 15)
		t.Fatalf("quote buttons = %s", got)
	}

	q := b.fake.Press(dm, alice, quote.ID, button(t, quote, "Confirm"))
	if ans := b.fake.WaitAnswer(t, q); !strings.HasPrefix(ans.Fields["text"], "Confirmed: ") || ans.Fields["show_alert"] == "true" {
		t.Fatalf("confirm answer = %v", ans.Fields)
	}
	var progress []string
	defer func() {
		if t.Failed() {
			for _, c := range b.fake.Calls("") {
				if c.Method != "getUpdates" {
					t.Logf("%s %s %d %s %q %q", c.At.Format("05.000"), c.Method, c.Code, c.Fields["chat_id"], c.Fields["parse_mode"], c.Description)
				}
			}
			t.Log(b.logs.String())
		}
	}()
	b.fake.Wait(t, wait, "progress edits after the confirm", func() bool {
		progress = nil
		for _, c := range b.edits(dm.ID, quote.ID) {
			if c.Fields["parse_mode"] == "" {
				progress = append(progress, c.Fields["text"])
			}
		}
		return len(progress) >= 2
	})
	if !strings.Contains(progress[0], "Research NVDA, AMD (standard)") || !strings.Contains(progress[1], "%  stage") {
		t.Fatalf("progress texts = %q", progress)
	}
	for _, c := range b.edits(dm.ID, quote.ID)[:2] {
		if !strings.Contains(c.Fields["reply_markup"], `"Cancel"`) || !strings.Contains(c.Fields["reply_markup"], `"Pause"`) {
			t.Fatalf("progress keyboard = %s", c.Fields["reply_markup"])
		}
	}

	final := b.final(t, dm.ID, quote.ID)
	for _, want := range []string{"Research NVDA, AMD: succeeded", "Cost: Charged $", "from your Credit (ledger entry ", "NVDA", research.Notice} {
		if !strings.Contains(final.Visible, want) {
			t.Errorf("final message lacks %q:\n%s", want, final.Visible)
		}
	}
	btns := final.Buttons()
	if len(btns) != 1 || btns[0].Text != "Receipt" || !strings.HasPrefix(btns[0].URL, "http://forgebot.test/r/") {
		t.Fatalf("final buttons = %+v", btns)
	}
	photo := b.fake.WaitCall(t, wait, "sendPhoto", func(c telegramtest.Call) bool { return c.OK() })
	if m, _ := b.fake.Message(dm.ID, photo.MessageID); m.ReplyTo != quote.ID || !bytes.HasPrefix(m.File.Data, []byte("\x89PNG")) {
		t.Fatalf("photo = reply to %d, %d bytes", m.ReplyTo, len(m.File.Data))
	}
	if n := b.fake.TooManyAnswered(); n != 0 {
		t.Errorf("%d calls broke Telegram's rate limits", n)
	}
	b.bed.CheckLedger()
}

// TestGroupOwnerOnly: in a group, only the run's owner may press its
// buttons: another member's Confirm and Cancel get an alert and change
// nothing; the owner's Cancel ends the run with a "cancelled" final.
func TestGroupOwnerOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, options{bed: testbed.Options{Pace: 3 * time.Millisecond}, start: true})
	b.bed.Fund(who(alice), billing.BucketCredit, billing.Micro)
	b.bed.Fund(who(bob), billing.BucketCredit, billing.Micro)

	b.fake.SendText(group, alice, "/research@someotherbot AAPL") // not for us
	b.fake.SendText(group, bob, "nice weather")                  // chatter
	b.fake.SendText(group, alice, "/research@forgebot_test_bot AAPL MSFT standard")
	quote := b.reply(t, group.ID, "Quote: standard research on AAPL, MSFT")
	// The group gets the quote only (its figures went to alice's private
	// chat, not counted here).
	toGroup := 0
	for _, c := range b.fake.Calls("sendMessage") {
		if c.Int("chat_id") == group.ID {
			toGroup++
		}
	}
	if toGroup != 1 {
		for _, c := range b.fake.Calls("sendMessage") {
			t.Logf("%s %q", c.Fields["chat_id"], c.Fields["text"])
		}
		t.Fatalf("%d messages sent to the group, want only the quote\n%s", toGroup, b.logs.String())
	}

	q := b.fake.Press(group, bob, quote.ID, button(t, quote, "Confirm"))
	if ans := b.fake.WaitAnswer(t, q); !strings.Contains(ans.Fields["text"], "Only the person") || ans.Fields["show_alert"] != "true" {
		t.Fatalf("bob's confirm answer = %v", ans.Fields)
	}
	if b.bed.OpenHolds() != 0 || len(b.edits(group.ID, quote.ID)) != 0 {
		t.Fatal("bob's press changed something")
	}

	q = b.fake.Press(group, alice, quote.ID, button(t, quote, "Confirm"))
	b.fake.WaitAnswer(t, q)
	var prog telegramtest.Message
	b.fake.Wait(t, wait, "the progress message", func() bool {
		prog, _ = b.fake.Message(group.ID, quote.ID)
		return strings.Contains(prog.Markup, `"Pause"`)
	})
	runID := runOf(t, prog)

	q = b.fake.Press(group, bob, quote.ID, button(t, prog, "Cancel"))
	if ans := b.fake.WaitAnswer(t, q); !strings.Contains(ans.Fields["text"], "Only the person") || ans.Fields["show_alert"] != "true" {
		t.Fatalf("bob's cancel answer = %v", ans.Fields)
	}
	if r, err := b.bed.Store.Run(t.Context(), runID); err != nil || r.State != research.Running && r.State != research.Queued {
		t.Fatalf("after bob's cancel the run is %s (%v)", r.State, err)
	}

	q = b.fake.Press(group, alice, quote.ID, button(t, prog, "Cancel"))
	if ans := b.fake.WaitAnswer(t, q); !strings.Contains(ans.Fields["text"], "Cancelling") {
		t.Fatalf("alice's cancel answer = %v", ans.Fields)
	}
	final := b.final(t, group.ID, quote.ID)
	if !strings.Contains(final.Visible, "AAPL, MSFT: cancelled") || !strings.Contains(final.Visible, "Charged") {
		t.Fatalf("final = %s", final.Visible)
	}
	b.bed.CheckSettled()
	if n := b.fake.TooManyAnswered(); n != 0 {
		t.Errorf("%d calls broke Telegram's rate limits", n)
		for _, c := range b.fake.Calls("") {
			t.Logf("%s %s %d %s %q", c.At.Format("05.000"), c.Method, c.Code, c.Fields["chat_id"], c.Fields["text"])
		}
	}
}

// TestScanToCompletion: `/scan us-megacaps quick csv` in a private chat, confirmed, ends with the report
// saying why its picks were picked, the ranked table of all ten symbols as a photo (a PNG a phone shows
// whole), the chart, and the CSV the user asked for.
func TestScanToCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t, options{start: true})
	b.bed.Fund(who(alice), billing.BucketCredit, billing.Micro)
	dm := telegramtest.Private(alice)
	b.fake.SendText(dm, alice, "/scan us-megacaps quick csv")
	quote := b.reply(t, dm.ID, "scan of us-megacaps")
	b.fake.WaitAnswer(t, b.fake.Press(dm, alice, quote.ID, button(t, quote, "Confirm")))
	final := b.final(t, dm.ID, quote.ID)
	if !strings.Contains(final.Visible, "Ranked watchlist (10 symbols)") || !strings.Contains(final.Visible, "the table is in the picture") ||
		!strings.Contains(final.Visible, ": picked: ") || strings.Contains(final.Text, "<pre>") {
		t.Fatalf("final message:\n%s", final.Visible)
	}
	files := map[string][]byte{}
	b.fake.Wait(t, wait, "the table, the chart and the CSV", func() bool {
		for _, m := range b.fake.Messages(dm.ID) {
			if m.ReplyTo == quote.ID && m.File.Name != "" {
				files[strings.SplitN(m.File.Name, "-", 2)[0]+path.Ext(m.File.Name)] = m.File.Data
			}
		}
		return len(files) == 3
	})
	if dir := os.Getenv("CHART_DIR"); dir != "" { // for a person to look at
		_ = os.WriteFile(path.Join(dir, "telegram-scan.png"), files["scan.png"], 0o644)
	}
	img, err := png.Decode(bytes.NewReader(files["scan.png"]))
	if err != nil || img.Bounds().Dx() != 1080 || img.Bounds().Dy() < 10*40 {
		t.Fatalf("the table's photo: %v (files %v)", err, len(files))
	}
	if _, err := png.Decode(bytes.NewReader(files["chart.png"])); err != nil {
		t.Fatalf("the chart: %v", err)
	}
	if csv := string(files["scan.csv"]); !strings.HasPrefix(csv, "rank,symbol,") || strings.Count(csv, "\n") != 11 {
		t.Fatalf("the CSV:\n%s", csv)
	}
	b.bed.CheckSettled()
}
