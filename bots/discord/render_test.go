package discord

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// checkLimits fails on anything Discord would refuse in m.
func checkLimits(t *testing.T, m message) {
	t.Helper()
	if units(m.content) > maxContent {
		t.Errorf("content %d units", units(m.content))
	}
	if len(m.embeds) > maxEmbeds {
		t.Errorf("%d embeds", len(m.embeds))
	}
	total := 0
	for _, e := range m.embeds {
		if units(e.Title) > maxTitle || units(e.Description) > maxDesc || len(e.Fields) > maxFields {
			t.Errorf("embed over its limits: title %d, description %d, %d fields", units(e.Title), units(e.Description), len(e.Fields))
		}
		total += units(e.Title) + units(e.Description)
		for _, f := range e.Fields {
			if f.Name == "" || f.Value == "" || units(f.Name) > maxFieldName || units(f.Value) > maxFieldValue {
				t.Errorf("field %q: name %d, value %d units", f.Name, units(f.Name), units(f.Value))
			}
			total += units(f.Name) + units(f.Value)
		}
		if e.Footer != nil {
			total += units(e.Footer.Text)
		}
	}
	if total > maxEmbedTotal {
		t.Errorf("embeds total %d units", total)
	}
	if len(m.components) > maxRows {
		t.Errorf("%d rows", len(m.components))
	}
	for _, r := range m.components {
		row := r.(discordgo.ActionsRow)
		if len(row.Components) == 0 || len(row.Components) > maxPerRow {
			t.Errorf("a row of %d", len(row.Components))
		}
		for _, c := range row.Components {
			b := c.(discordgo.Button)
			if (b.URL == "") == (b.CustomID == "") || len(b.CustomID) > maxCustomID || units(b.Label) > maxLabel {
				t.Errorf("button %+v", b)
			}
		}
	}
}

func TestRenderLongReport(t *testing.T) {
	t.Parallel()
	var sb strings.Builder
	for i := range 400 {
		sb.WriteString("line ")
		sb.WriteString(strings.Repeat("x", i%90))
		sb.WriteString(" **bold** _it_ `code` @everyone\n")
	}
	long := sb.String()
	v := bots.View{Kind: bots.KindFinal, Title: "Research NVDA: succeeded", Text: long, Final: true,
		Fields: []bots.Field{{Name: "Cost", Value: "Charged $0.01"}},
		Image:  []byte("\x89PNG..."), ImageName: "chart-rABC.png", Notice: "Not financial advice.",
		Buttons: [][]bots.Button{{{Label: "Receipt", URL: "https://forgebot.test/r/x"}}}}
	m := render(v)
	checkLimits(t, m)
	if len(m.embeds) != 1 || !strings.Contains(m.embeds[0].Description, "attached as report-rABC.md") {
		t.Fatalf("a cut report: %d embeds, description ends %q", len(m.embeds), tail(m.embeds[0].Description))
	}
	var md, chart bool
	for _, f := range m.files {
		md = md || (f.name == "report-rABC.md" && strings.Contains(string(f.data), long) && strings.Contains(string(f.data), "Not financial advice."))
		chart = chart || (f.name == "chart-rABC.png" && f.contentType == "image/png")
	}
	if !md || !chart {
		t.Fatalf("files = %+v", m.files)
	}
	if m.embeds[0].Image == nil || m.embeds[0].Image.URL != "attachment://chart-rABC.png" || m.embeds[0].Footer.Text != "Not financial advice." {
		t.Fatalf("embed = %+v", m.embeds[0])
	}

	// A text a little over one description is split, whole, over two embeds.
	v.Text = strings.Repeat("0123456789 abcdefghij\n", 250) // 5500 units
	m = render(v)
	checkLimits(t, m)
	if len(m.embeds) != 2 || len(m.files) != 1 {
		t.Fatalf("a 5500-unit text: %d embeds, %d files; want 2 embeds and only the chart", len(m.embeds), len(m.files))
	}
	if got := m.embeds[0].Description + "\n" + m.embeds[1].Description; got != strings.TrimSuffix(v.Text, "\n") {
		t.Fatal("the split text is not the whole text")
	}
}

func tail(s string) string {
	if len(s) > 80 {
		return s[len(s)-80:]
	}
	return s
}

func TestRenderLimitsHoldForAnyView(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("é🙂*", 3000)
	var fields []bots.Field
	for range 40 {
		fields = append(fields, bots.Field{Name: huge, Value: huge})
	}
	var row []bots.Button
	for i := range 7 {
		row = append(row, bots.Button{Label: huge, Data: "q:qAAAAAAAAAAAAAAAA:confirm" + strings.Repeat("x", i*20)})
	}
	row = append(row, bots.Button{Label: "bad link", URL: "javascript:alert(1)"}, bots.Button{Label: "no action"})
	for _, v := range []bots.View{
		{Title: huge, Text: huge, Fields: fields, Notice: huge, Buttons: [][]bots.Button{row, row, row, row, row, row}},
		{Text: "\n\n\n"},
		{Fields: []bots.Field{{}}},
		{},
	} {
		m := render(v)
		checkLimits(t, m)
	}
	count := func(m message) (n int) {
		for _, r := range m.components {
			n += len(r.(discordgo.ActionsRow).Components)
		}
		return n
	}
	if m := render(bots.View{Text: "x", Buttons: [][]bots.Button{row}}); count(m) != 4 || len(m.components) != 1 {
		t.Fatalf("kept %d buttons in %d rows; want the 4 with custom_ids up to 100 characters", count(m), len(m.components))
	}
	seven := make([]bots.Button, 7)
	for i := range seven {
		seven[i] = bots.Button{Label: "b", Data: "r:rAAAAAAAAAAAAAAAA:cancel"}
	}
	if m := render(bots.View{Text: "x", Buttons: [][]bots.Button{seven}}); count(m) != 7 || len(m.components) != 2 {
		t.Fatalf("7 buttons in %d rows", len(m.components))
	}
}

func TestEscape(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"**bold** _it_ `x` ~~s~~ ||spoiler||":  `\*\*bold\*\* \_it\_ \` + "`x\\`" + ` \~\~s\~\~ \|\|spoiler\|\|`,
		"# heading\n> quote\n- item\n12. item": "\\# heading\n\\> quote\n\\- item\n12\\. item",
		"[link](http://x) <@123> a-b 3.5":      `\[link\](http://x) \<@123> a-b 3.5`,
		`back\slash`:                           `back\\slash`,
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
	for _, n := range []int{5, 6, 7} {
		got := strings.TrimSuffix(truncate(`ab\\\\\\*`, n), "…") // "ab", three escaped backslashes, a star
		if trail := len(got) - len(strings.TrimRight(got, `\`)); trail%2 == 1 {
			t.Errorf("truncate(_, %d) left a dangling escape: %q", n, got)
		}
	}
	if got := truncate("🙂🙂🙂", 4); units(got) > 4 {
		t.Errorf("truncate counted runes, not UTF-16 units: %q", got)
	}
}

func TestCommandText(t *testing.T) {
	t.Parallel()
	d := discordgo.ApplicationCommandInteractionData{Name: "research", Options: []*discordgo.ApplicationCommandInteractionDataOption{
		{Name: "public", Type: discordgo.ApplicationCommandOptionBoolean, Value: true},
		{Name: "model", Type: discordgo.ApplicationCommandOptionString, Value: "gpt-4o-mini"},
		{Name: "symbols", Type: discordgo.ApplicationCommandOptionString, Value: " NVDA,\nAMD "},
		{Name: "depth", Type: discordgo.ApplicationCommandOptionString, Value: "deep"},
	}}
	if text, public := commandText(d); text != "/research NVDA, AMD deep model:gpt-4o-mini" || !public {
		t.Fatalf("commandText = %q, %v", text, public)
	}
	if text, public := commandText(discordgo.ApplicationCommandInteractionData{Name: "balance"}); text != "/balance" || public {
		t.Fatalf("commandText = %q, %v", text, public)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := Config{Token: "abc.def", AppID: "123", GuildID: "456", APIURL: "http://127.0.0.1:1", AdminRoles: []string{"9"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"no token":          func(c *Config) { c.Token = "" },
		"token with spaces": func(c *Config) { c.Token = "Bot abc" },
		"bad app id":        func(c *Config) { c.AppID = "app" },
		"bad guild":         func(c *Config) { c.GuildID = "g1" },
		"bad role":          func(c *Config) { c.AdminRoles = []string{"admins"} },
		"http without key":  func(c *Config) { c.HTTPInteractions = true },
		"short key":         func(c *Config) { c.HTTPInteractions, c.PublicKey = true, "abcd" },
		"relative api url":  func(c *Config) { c.APIURL = "/api" },
		"ftp api url":       func(c *Config) { c.APIURL = "ftp://x" },
		"defer too late":    func(c *Config) { c.DeferAfter = 3 * time.Second },
	} {
		c := ok
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "abc.def") {
			t.Errorf("%s: the token is in the error %q", name, err)
		}
	}
}

// TestCleanErrors: discordgo's errors carry URLs with tokens; clean maps them
// to errors without.
func TestCleanErrors(t *testing.T) {
	t.Parallel()
	a := &Adapter{cfg: Config{Token: "bot-secret"}}
	hook := "https://discord.com/api/v9/webhooks/123/itok-secret/messages/@original"
	rl := &discordgo.RateLimitError{RateLimit: &discordgo.RateLimit{TooManyRequests: &discordgo.TooManyRequests{RetryAfter: 1500 * time.Millisecond}, URL: hook}}
	var ra *bots.RetryAfterError
	if err := a.clean(rl); !errors.As(err, &ra) || ra.Wait != 1500*time.Millisecond {
		t.Fatalf("429 = %v", err)
	}
	req, _ := http.NewRequest("PATCH", hook, nil)
	req.Header.Set("Authorization", "Bot bot-secret")
	re := &discordgo.RESTError{Request: req, Response: &http.Response{StatusCode: 404, Status: "404 Not Found"},
		ResponseBody: []byte(`{"code":10008,"message":"Unknown Message"}`), Message: &discordgo.APIErrorMessage{Code: 10008, Message: "Unknown Message"}}
	err := a.clean(re)
	if code(err) != 10008 || strings.Contains(err.Error(), "secret") {
		t.Fatalf("REST error = %v", err)
	}
	err = a.clean(&url.Error{Op: "Patch", URL: hook, Err: errors.New("connection refused")})
	if strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("transport error = %v", err)
	}
	if err := a.clean(errors.New("failed at " + hook + " with bot-secret")); strings.Contains(err.Error(), "secret") {
		t.Fatalf("plain error = %v", err)
	}
}

// TestRenderScanTableAsImage: a scan's ranked table, wider than a phone shows as fixed-width text, is
// attached as a picture (a real PNG, phone-wide) in an embed of its own, the chart in the last; the text
// keeps why the picks were picked instead of the table, and every limit holds.
func TestRenderScanTableAsImage(t *testing.T) {
	t.Parallel()
	rep := research.Report{Title: "Scan megacaps", DataSource: "demo", Notice: research.Notice, Overview: "The picks hold up."}
	for i := range 12 {
		r := research.ScanRow{Rank: i + 1, Symbol: fmt.Sprintf("SYM%d", i), Close: "123.45", Return1M: "+1.2%", RSI14: "55.00", Vol20: "20.0%"}
		if i < 2 {
			r.Picked, r.Signals, r.Score = true, []string{"golden_cross", "breakout_20d"}, 2.5
			r.Why = "picked: 2 signal(s) (golden_cross, breakout_20d), score 2.5"
		}
		rep.Scan = append(rep.Scan, r)
	}
	v := bots.View{Kind: bots.KindFinal, Final: true, Title: "Scan megacaps: succeeded", Report: &rep, Text: bots.RenderReport(rep),
		Notice: research.Notice, Fields: []bots.Field{{Name: "Cost", Value: "Charged $0.01"}}, Image: []byte("\x89PNG chart"), ImageName: "chart-r1.png"}
	if !strings.Contains(v.Text, "#   symbol") {
		t.Fatal("the plain report lost its fixed-width table (the console shows it)")
	}
	m := render(v)
	checkLimits(t, m)
	var table []byte
	for _, f := range m.files {
		if f.name == "scan-r1.png" {
			table = f.data
		}
	}
	img, err := png.Decode(bytes.NewReader(table))
	if err != nil || img.Bounds().Dx() != 1080 || img.Bounds().Dy() < 12*40 {
		t.Fatalf("the table's picture: %d bytes, %v", len(table), err)
	}
	var images []string
	var text strings.Builder
	for _, e := range m.embeds {
		if e.Image != nil {
			images = append(images, e.Image.URL)
		}
		text.WriteString(e.Description)
	}
	if strings.Join(images, ",") != "attachment://scan-r1.png,attachment://chart-r1.png" || m.embeds[len(m.embeds)-1].Image.URL != "attachment://chart-r1.png" {
		t.Fatalf("embed images %v", images)
	}
	if s := text.String(); strings.Contains(s, "#   symbol") || !strings.Contains(s, "the table is in the picture") || !strings.Contains(s, "SYM1: picked") {
		t.Fatalf("the text shows %q", s)
	}
}
