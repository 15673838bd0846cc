package telegram

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/go-telegram/bot/models"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// Telegram's sizes. Message text is limited to 4096 characters after entity
// parsing, counted in UTF-16 code units; the adapter measures the HTML source,
// which is never shorter, so a part that fits here fits there.
const (
	maxText     = 4096
	maxCaption  = 1024
	maxAlert    = 200
	maxCallback = 64 // callback_data, in bytes
	// maxParts is how many messages a final report may take before it is sent
	// as a document instead: more would flood a group and its rate budget.
	maxParts = 3
)

// htmlEscaper escapes the three characters Telegram's HTML mode reserves.
// bot.EscapeMarkdown is for MarkdownV2 and not for this; html.EscapeString
// would also work (Telegram accepts numeric entities) but escapes quotes we
// never put in attributes.
var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// mentionRE finds "@name" (and "@everyone"-like words): Telegram turns them
// into mentions, which notify people, even in plain text.
var mentionRE = regexp.MustCompile(`@(\w)`)

// clean makes text from the conversation (and so from models and users)
// safe to show: valid UTF-8, and no @mention that would ping anyone (a word
// joiner after the @ keeps it readable but breaks the mention).
func clean(s string) string {
	return mentionRE.ReplaceAllString(research.CleanText(s), "@\u2060$1")
}

// escapeHTML cleans and escapes text for parse_mode HTML.
func escapeHTML(s string) string { return htmlEscaper.Replace(clean(s)) }

// textLen is a string's length as Telegram counts it (UTF-16 code units).
func textLen(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// truncate shortens s to at most n UTF-16 units, marking the cut with "…".
func truncate(s string, n int) string {
	if textLen(s) <= n {
		return s
	}
	used := 0
	for i, r := range s {
		w := 1
		if r >= 0x10000 {
			w = 2
		}
		if used+w > n-1 {
			return s[:i] + "…"
		}
		used += w
	}
	return s
}

// block is one paragraph of an HTML message: an optional pre-rendered head
// (a bold label) and raw text wrapped in one tag. Parts are cut only between
// blocks, or inside a block's raw text before escaping, with the tag closed
// and reopened around each piece, so no tag or entity is ever broken.
type block struct {
	head string // HTML, kept with the first piece
	tag  string // "", "b", "i" or "pre"
	text string // raw text
}

func (b block) render(text string, first bool) string {
	var s strings.Builder
	if first {
		s.WriteString(b.head)
	}
	if b.tag != "" {
		s.WriteString("<" + b.tag + ">")
	}
	s.WriteString(escapeHTML(text))
	if b.tag != "" {
		s.WriteString("</" + b.tag + ">")
	}
	return s.String()
}

func bold(text string) block   { return block{tag: "b", text: text} }
func italic(text string) block { return block{tag: "i", text: text} }
func plain(text string) block  { return block{text: text} }
func labelled(name, text string) block {
	return block{head: "<b>" + escapeHTML(name) + "</b>: ", text: text}
}

// paragraphs splits text on blank lines into plain blocks.
func paragraphs(text string) []block {
	var out []block
	for _, p := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if p = strings.Trim(p, "\n"); strings.TrimSpace(p) != "" {
			out = append(out, plain(p))
		}
	}
	return out
}

// pack joins blocks into messages of at most limit units, splitting a block
// that alone is too long.
func pack(blocks []block, limit int) []string {
	var (
		parts []string
		cur   strings.Builder
		n     int
	)
	add := func(h string) {
		hl := textLen(h)
		if n > 0 && n+2+hl > limit {
			parts = append(parts, cur.String())
			cur.Reset()
			n = 0
		}
		if n > 0 {
			cur.WriteString("\n\n")
			n += 2
		}
		cur.WriteString(h)
		n += hl
	}
	for _, b := range blocks {
		if h := b.render(b.text, true); textLen(h) <= limit {
			add(h)
			continue
		}
		for i, piece := range splitRaw(b.text, func(p string) bool { return textLen(b.render(p, true)) <= limit }) {
			add(b.render(piece, i == 0))
		}
	}
	if n > 0 {
		parts = append(parts, cur.String())
	}
	return parts
}

// splitRaw cuts raw text into pieces that fit, preferring line breaks, then
// spaces, and never cutting inside a UTF-8 sequence.
func splitRaw(s string, fits func(string) bool) []string {
	var out []string
	for s != "" {
		if fits(s) {
			return append(out, s)
		}
		// The longest prefix that fits, by binary search over rune starts.
		var starts []int
		for i := range s {
			starts = append(starts, i)
		}
		starts = append(starts, len(s))
		lo, hi := 1, len(starts)-1 // starts[lo] is one rune, always taken
		for lo < hi {
			mid := (lo + hi + 1) / 2
			if fits(s[:starts[mid]]) {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		cut := starts[lo]
		if i := strings.LastIndex(s[:cut], "\n"); i > cut/2 {
			cut = i + 1
		} else if i := strings.LastIndex(s[:cut], " "); i > cut/2 {
			cut = i + 1
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	return out
}

// plainText renders a view without markup (progress messages): no entity
// is parsed from it, so nothing in it can break the message.
func plainText(v bots.View, links []bots.Button) string {
	var lines []string
	for _, s := range []string{v.Title, v.Text} {
		if s = strings.TrimSpace(s); s != "" {
			lines = append(lines, clean(s))
		}
	}
	for _, f := range v.Fields {
		lines = append(lines, clean(f.Name+": "+f.Value))
	}
	for _, l := range links {
		lines = append(lines, clean(l.Label+": "+l.URL))
	}
	text := strings.Join(lines, "\n")
	if strings.TrimSpace(text) == "" {
		text = "…"
	}
	return truncate(text, maxText)
}

// htmlBlocks renders a view as HTML blocks. A final view puts the charge
// right under its title, then the report, then the notice.
// With table, the scan's table goes as a picture and the report shows its brief.
func htmlBlocks(v bots.View, links []bots.Button, table bool) []block {
	var out []block
	if v.Title != "" {
		out = append(out, bold(v.Title))
	}
	fields := func() {
		for _, f := range v.Fields {
			out = append(out, labelled(f.Name, f.Value))
		}
		for _, l := range links {
			out = append(out, labelled(l.Label, l.URL))
		}
	}
	noticeShown := false
	if v.Final {
		fields()
	}
	switch {
	case v.Report != nil:
		out = append(out, reportBlocks(*v.Report, table)...)
		noticeShown = v.Report.Notice == v.Notice || v.Notice == ""
	default:
		out = append(out, paragraphs(v.Text)...)
		noticeShown = v.Notice == "" || strings.Contains(v.Text, v.Notice)
	}
	if !v.Final {
		fields()
	}
	if !noticeShown {
		out = append(out, italic(v.Notice))
	}
	if len(out) == 0 {
		out = append(out, plain("…"))
	}
	return out
}

// reportBlocks renders a report richly: symbols and parts in bold, figures
// one per line, the notice in italics.
func reportBlocks(rep research.Report, table bool) []block {
	meta := fmt.Sprintf("Data: %s %s", rep.DataSource, rep.AsOfText())
	if rep.Synthetic {
		meta += " (SYNTHETIC demo data, not real prices)"
	}
	if rep.RuleBased {
		meta += "; written by the rule-based offline analyst"
	} else if rep.Model != "" {
		meta += "; model " + rep.Model
	}
	out := []block{italic(meta)}
	for _, part := range bots.AgentParts(rep) {
		if strings.TrimSpace(part.Text) == "" {
			continue
		}
		ps := paragraphs(part.Text)
		ps[0].head = "<b>" + part.Name + "</b>\n"
		out = append(out, ps...)
	}
	switch {
	case len(rep.Scan) > 0 && table:
		// The table is a photo of its own (a phone wraps a fixed-width table); the text says why the
		// picks were picked.
		out = append(out, bold(fmt.Sprintf("Ranked watchlist (%d symbols)", len(rep.Scan))), plain(research.ScanBrief(rep.Scan)))
	case len(rep.Scan) > 0:
		// Fixed width, so the columns line up.
		out = append(out, bold(fmt.Sprintf("Ranked watchlist (%d symbols)", len(rep.Scan))), block{tag: "pre", text: research.ScanText(rep.Scan)})
	}
	for _, s := range rep.Sections {
		out = append(out, bold(s.Symbol))
		if s.Context != "" {
			out = append(out, italic(s.Context))
		}
		for _, w := range s.Warnings {
			out = append(out, labelled("Warning", w))
		}
		var figs []string
		for _, f := range s.Figures {
			figs = append(figs, f.Label+": "+f.Value)
		}
		if len(figs) > 0 {
			out = append(out, plain(strings.Join(figs, "\n")))
		}
		out = append(out, paragraphs(s.Text)...)
	}
	for _, part := range bots.ReportParts(rep) {
		if strings.TrimSpace(part.Text) == "" {
			continue
		}
		ps := paragraphs(part.Text)
		ps[0].head = "<b>" + part.Name + "</b>\n"
		out = append(out, ps...)
	}
	failed := make([]string, 0, len(rep.Failed))
	for sym := range rep.Failed {
		failed = append(failed, sym)
	}
	slices.Sort(failed)
	for _, sym := range failed {
		out = append(out, plain(sym+" could not be analysed: "+rep.Failed[sym]))
	}
	if rep.Missing != "" {
		out = append(out, plain("Not written (and not charged): "+rep.Missing))
	}
	if rep.Notice != "" {
		out = append(out, italic(rep.Notice))
	}
	return out
}

// inlineKeyboard is the reply_markup the adapter sends as its own JSON:
// go-telegram/bot v1.19.0's InlineKeyboardButton serialises a non-pointer
// copy_text struct as "copy_text":{"text":""} on every button, which breaks
// Telegram's rule that a button uses exactly one action field.
type inlineKeyboard struct {
	InlineKeyboard [][]inlineButton `json:"inline_keyboard"`
}

type inlineButton struct {
	Text         string `json:"text"`
	Style        string `json:"style,omitempty"`
	URL          string `json:"url,omitempty"`
	CallbackData string `json:"callback_data,omitempty"`
}

// buttonStyles maps the conversation's styles to Bot API 9.4 button styles.
var buttonStyles = map[string]string{"primary": "primary", "danger": "danger", "success": "success"}

// keyboard builds the inline keyboard of a view. Link buttons Telegram would
// refuse (a host without a dot, like localhost), or all of them with
// linksAsText, come back as links to show in the text; payloads over 64
// bytes are dropped and reported.
func keyboard(rows [][]bots.Button, linksAsText bool) (kb *inlineKeyboard, links []bots.Button, dropped []string) {
	kb = &inlineKeyboard{InlineKeyboard: [][]inlineButton{}}
	for _, row := range rows {
		var out []inlineButton
		for _, b := range row {
			label := strings.TrimSpace(clean(b.Label))
			switch {
			case label == "":
				continue
			case b.URL != "":
				if linksAsText || !linkOK(b.URL) {
					links = append(links, b)
					continue
				}
				out = append(out, inlineButton{Text: label, URL: b.URL, Style: buttonStyles[b.Style]})
			case b.Data == "":
				continue
			case len(b.Data) > maxCallback || !utf8.ValidString(b.Data):
				dropped = append(dropped, b.Label)
			default:
				out = append(out, inlineButton{Text: label, CallbackData: b.Data, Style: buttonStyles[b.Style]})
			}
		}
		if len(out) > 0 {
			kb.InlineKeyboard = append(kb.InlineKeyboard, out)
		}
	}
	return kb, links, dropped
}

func (kb *inlineKeyboard) empty() bool { return kb == nil || len(kb.InlineKeyboard) == 0 }

// markup is kb as a reply_markup: nil (omitted) when empty, unless the
// message is being edited, where an empty keyboard removes the old buttons.
func (kb *inlineKeyboard) markup(edit bool) models.ReplyMarkup {
	if kb.empty() && !edit {
		return nil
	}
	if kb == nil {
		kb = &inlineKeyboard{InlineKeyboard: [][]inlineButton{}}
	}
	return kb
}

// linkOK reports whether Telegram accepts u as a button link.
func linkOK(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	switch p.Scheme {
	case "tg":
		return true
	case "http", "https":
		return strings.Contains(p.Hostname(), ".")
	}
	return false
}
