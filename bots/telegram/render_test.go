package telegram

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/bots/telegram/telegramtest"
	"github.com/tokensforge/forgebot/research"
)

func TestEscapeAndClean(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"a<b>&c":                    "a&lt;b&gt;&amp;c",
		"&amp; stays escaped":       "&amp;amp; stays escaped",
		`"quotes" and 'apostrophe'`: `"quotes" and 'apostrophe'`,
		"ping @everyone and @bob_1": "ping @\u2060everyone and @\u2060bob_1",
		"mail a@b.c, lone @ sign":   "mail a@\u2060b.c, lone @ sign",
		"bad \xff utf8":             "bad \uFFFD utf8",
	} {
		if got := escapeHTML(in); got != want {
			t.Errorf("escapeHTML(%q) = %q, want %q", in, got, want)
		}
		if _, err := telegramtest.ParseHTML(escapeHTML(in)); err != nil {
			t.Errorf("escapeHTML(%q) does not parse: %v", in, err)
		}
	}
	if got := truncate("😀😀😀", 4); got != "😀…" {
		t.Errorf("truncate = %q", got)
	}
	if textLen("a😀") != 3 {
		t.Error("textLen counts UTF-16 units")
	}
}

// TestPackNeverBreaksTags splits hostile text at many limits: every part
// fits, parses as Telegram HTML, and together they show all of the text.
func TestPackNeverBreaksTags(t *testing.T) {
	t.Parallel()
	hostile := strings.Repeat("x<y && z>w 😀 </b><i>@all ", 40) + strings.Repeat("verylongwordwithoutspaces", 30)
	blocks := []block{bold("Title <with> & stuff"), labelled("Cost & fee", "$1 < $2"), plain(hostile), italic(hostile), plain("end")}
	var want strings.Builder
	for _, b := range blocks {
		v, _ := telegramtest.ParseHTML(b.render(b.text, true))
		want.WriteString(v)
	}
	for _, limit := range []int{60, 100, 333, 4096} {
		var got strings.Builder
		for i, p := range pack(blocks, limit) {
			if textLen(p) > limit {
				t.Fatalf("limit %d: part %d has %d units", limit, i, textLen(p))
			}
			v, err := telegramtest.ParseHTML(p)
			if err != nil {
				t.Fatalf("limit %d: part %d does not parse: %v\n%s", limit, i, err, p)
			}
			got.WriteString(v)
		}
		norm := func(s string) string { return strings.Join(strings.Fields(s), "") }
		if norm(got.String()) != norm(want.String()) {
			t.Fatalf("limit %d: text lost or changed", limit)
		}
	}
}

func TestKeyboardJSON(t *testing.T) {
	t.Parallel()
	kb, links, dropped := keyboard([][]bots.Button{
		{{Label: "Confirm $0.01", Data: "q:qAAAAAAAAAAAAAAAA:confirm", Style: "primary"}, {Label: "Cancel", Data: "q:qAAAAAAAAAAAAAAAA:decline", Style: "danger"}},
		{{Label: "Too long", Data: strings.Repeat("x", 65)}, {Label: "", Data: "x"}},
		{{Label: "Receipt", URL: "https://forgebot.example.com/r/1"}, {Label: "Local", URL: "http://localhost:8080/r/1"}},
	}, false)
	raw, _ := json.Marshal(kb.markup(false))
	want := `{"inline_keyboard":[[{"text":"Confirm $0.01","style":"primary","callback_data":"q:qAAAAAAAAAAAAAAAA:confirm"},` +
		`{"text":"Cancel","style":"danger","callback_data":"q:qAAAAAAAAAAAAAAAA:decline"}],[{"text":"Receipt","url":"https://forgebot.example.com/r/1"}]]}`
	if string(raw) != want {
		t.Fatalf("keyboard JSON\n got %s\nwant %s", raw, want)
	}
	if len(links) != 1 || links[0].Label != "Local" || len(dropped) != 1 {
		t.Fatalf("links %v dropped %v", links, dropped)
	}
	if m := (&inlineKeyboard{}).markup(false); m != nil {
		t.Fatalf("an empty keyboard on a new message = %v, want none", m)
	}
	if raw, _ := json.Marshal((*inlineKeyboard)(nil).markup(true)); string(raw) != `{"inline_keyboard":[]}` {
		t.Fatalf("an edit without buttons sends %s, want an empty keyboard", raw)
	}
}

// TestLibraryKeyboardCarriesCopyText documents why the adapter sends its own
// reply_markup: go-telegram/bot v1.19.0 puts an empty copy_text on every
// button, a second action field that the Bot API documents as not allowed.
func TestLibraryKeyboardCarriesCopyText(t *testing.T) {
	t.Parallel()
	raw, _ := json.Marshal(models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "Cancel", CallbackData: "r:x:cancel"}}}})
	if !strings.Contains(string(raw), `"copy_text":{"text":""}`) {
		t.Fatalf("go-telegram/bot no longer sends copy_text (%s): the adapter's own keyboard JSON may be dropped", raw)
	}
	kb, _, _ := keyboard([][]bots.Button{{{Label: "Cancel", Data: "r:x:cancel"}}}, false)
	if own, _ := json.Marshal(kb); strings.Contains(string(own), "copy_text") {
		t.Fatalf("own keyboard = %s", own)
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	a := &Adapter{log: slog.New(slog.DiscardHandler)}
	prog := a.plan(bots.View{Kind: bots.KindProgress, Title: "Research <X>", Text: "50% @here"}, false)
	if len(prog) != 1 || prog[0].html || prog[0].text != "Research <X>\n50% @\u2060here" {
		t.Fatalf("progress plan = %+v", prog)
	}
	rep := &research.Report{Notice: research.Notice, Synthesis: strings.Repeat("word ", 6000)}
	final := a.plan(bots.View{Kind: bots.KindFinal, Final: true, Title: "T", Report: rep, Notice: research.Notice, Image: []byte("png"), ImageName: "chart-r1.png"}, false)
	var kinds []string
	for _, s := range final {
		kinds = append(kinds, s.kind)
	}
	if strings.Join(kinds, ",") != "text,document,photo" || final[1].fileName != "report-r1.txt" || !strings.Contains(final[0].text, research.Notice) {
		t.Fatalf("long final plan = %v %q", kinds, final[0].text)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	const token = "123:SECRETsecret"
	r := newRedactor(token)
	err := r.classify("sendMessage", fmt.Errorf("%w, %s", bot.ErrorBadRequest, "Bad Request: message is not modified, seen at /bot"+token+"/x"))
	if !errors.Is(err, bot.ErrorBadRequest) || !notModified(err) || strings.Contains(err.Error(), token) || strings.Contains(fmt.Sprint(errors.Unwrap(err)), token) {
		t.Fatalf("classify = %v", err)
	}
	var ra *bots.RetryAfterError
	if err := r.classify("editMessageText", fmt.Errorf("wrapped: %w", &bot.TooManyRequestsError{Message: "x", RetryAfter: 3})); !errors.As(err, &ra) || ra.Wait.Seconds() != 3 {
		t.Fatalf("a wrapped 429 = %v", err)
	}
	if err := r.classify("editMessageText", fmt.Errorf("%w, Bad Request: message to edit not found", bot.ErrorBadRequest)); !gone(err) || !permanent(err) {
		t.Fatalf("gone = %v", err)
	}
}

func TestSyntheticLabelOnEveryPart(t *testing.T) {
	t.Parallel()
	a := &Adapter{log: slog.New(slog.DiscardHandler)}
	// Long enough for two or three messages, short enough not to become a document.
	rep := &research.Report{Notice: research.Notice, Synthetic: true, Synthesis: strings.Repeat("word ", 1500)}
	steps := a.plan(bots.View{Kind: bots.KindFinal, Final: true, Title: "T", Report: rep, Notice: research.Notice}, false)
	if len(steps) < 2 {
		t.Fatalf("expected a split report, got %d steps", len(steps))
	}
	for i, st := range steps {
		if st.kind != "text" || !strings.Contains(st.text, "SYNTHETIC") || textLen(st.text) > maxText {
			t.Errorf("part %d (%s, %d units) lacks the synthetic label or is too long: %.80q", i+1, st.kind, textLen(st.text), st.text)
		}
	}
	// A real report's parts carry no such label.
	rep.Synthetic = false
	for i, st := range a.plan(bots.View{Kind: bots.KindFinal, Final: true, Title: "T", Report: rep, Notice: research.Notice}, false) {
		if strings.Contains(st.text, "SYNTHETIC") {
			t.Errorf("real report part %d says synthetic", i+1)
		}
	}
}

// scanView is the final view of a scan of n symbols, the first two picked.
func scanView(n int) bots.View {
	rep := research.Report{Title: "Scan megacaps", DataSource: "demo", Notice: research.Notice, Overview: "The picks hold up."}
	for i := range n {
		r := research.ScanRow{Rank: i + 1, Symbol: fmt.Sprintf("SYM%d", i), Close: "123.45", Return1M: "+1.2%", RSI14: "55.00", Vol20: "20.0%"}
		if i < 2 {
			r.Picked, r.Signals, r.Score = true, []string{"golden_cross", "breakout_20d"}, 2.5
			r.Why = "picked: 2 signal(s) (golden_cross, breakout_20d), score 2.5"
		}
		rep.Scan = append(rep.Scan, r)
	}
	return bots.View{Kind: bots.KindFinal, Final: true, Title: "Scan megacaps: succeeded", Report: &rep, Text: bots.RenderReport(rep),
		Notice: research.Notice, Fields: []bots.Field{{Name: "Cost", Value: "Charged $0.01"}}, Image: []byte("\x89PNG chart"), ImageName: "chart-r1.png"}
}

// TestScanTableAsPhoto: a scan's ranked table, wider than a phone shows as fixed-width text, goes as a photo
// of its own (a real PNG, phone-wide) before the chart; the message keeps why the picks were picked instead
// of the fixed-width table.
func TestScanTableAsPhoto(t *testing.T) {
	t.Parallel()
	a := &Adapter{log: slog.New(slog.DiscardHandler)}
	steps := a.plan(scanView(12), false)
	var kinds []string
	for _, s := range steps {
		kinds = append(kinds, s.kind+":"+s.fileName)
	}
	if strings.Join(kinds, ",") != "text:,photo:scan-r1.png,photo:chart-r1.png" {
		t.Fatalf("plan = %v", kinds)
	}
	if text := steps[0].text; strings.Contains(text, "<pre>") || !strings.Contains(text, "the table is in the picture") ||
		!strings.Contains(text, "SYM1: picked: 2 signal(s)") {
		t.Fatalf("the message's text = %q", text)
	}
	img, err := png.Decode(bytes.NewReader(steps[1].file))
	if err != nil || img.Bounds().Dx() != 1080 || img.Bounds().Dy() < 12*40 {
		t.Fatalf("the table's photo: %v, %v", img.Bounds(), err)
	}
	if !strings.HasPrefix(steps[1].text, "Ranked table: Scan megacaps") {
		t.Fatalf("caption %q", steps[1].text)
	}
	// Progress views never carry it.
	if p := a.plan(bots.View{Kind: bots.KindProgress, Title: "Scan", Report: scanView(12).Report}, false); len(p) != 1 {
		t.Fatalf("progress plan = %+v", p)
	}
}
