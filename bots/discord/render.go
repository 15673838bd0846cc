package discord

import (
	"bytes"
	"regexp"
	"strings"
	"unicode/utf16"

	"github.com/bwmarrin/discordgo"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// Discord's message limits, counted in UTF-16 code units as Discord counts them.
const (
	maxContent    = 2000
	maxEmbeds     = 10
	maxTitle      = 256
	maxDesc       = 4096
	maxFields     = 25
	maxFieldName  = 256
	maxFieldValue = 1024
	maxFooter     = 2048
	maxEmbedTotal = 6000
	maxRows       = 5
	maxPerRow     = 5
	maxLabel      = 80
	maxCustomID   = 100
)

// Embed colours by view kind.
var colors = map[bots.Kind]int{
	bots.KindInfo:     0x99AAB5,
	bots.KindQuote:    0x5865F2,
	bots.KindProgress: 0xFEE75C,
	bots.KindFinal:    0x57F287,
	bots.KindError:    0xED4245,
}

// message is a view rendered for Discord: what every send or edit endpoint
// takes, whatever its request type.
type message struct {
	content    string
	embeds     []*discordgo.MessageEmbed
	components []discordgo.MessageComponent
	files      []file
	ephemeral  bool
}

// file is an attachment kept as bytes, so a message can be sent twice (a
// retry) without draining a reader.
type file struct {
	name, contentType string
	data              []byte
}

// noMentions is set on every message: model and user text must never ping
// anyone, @everyone included. An empty (not nil) Parse is sent as "parse":[].
func noMentions() *discordgo.MessageAllowedMentions {
	return &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{}}
}

func (m message) discordFiles() []*discordgo.File {
	var out []*discordgo.File
	for _, f := range m.files {
		out = append(out, &discordgo.File{Name: f.name, ContentType: f.contentType, Reader: bytes.NewReader(f.data)})
	}
	return out
}

func (m message) flags() discordgo.MessageFlags {
	if m.ephemeral {
		return discordgo.MessageFlagsEphemeral
	}
	return 0
}

// response is m as an interaction callback's data.
func (m message) response() *discordgo.InteractionResponseData {
	return &discordgo.InteractionResponseData{Content: m.content, Embeds: m.embeds, Components: m.components,
		AllowedMentions: noMentions(), Files: m.discordFiles(), Flags: m.flags()}
}

// send is m as a new channel message.
func (m message) send() *discordgo.MessageSend {
	return &discordgo.MessageSend{Content: m.content, Embeds: m.embeds, Components: m.components,
		AllowedMentions: noMentions(), Files: m.discordFiles()}
}

// edit is m replacing channel message id: content, embeds and components are
// always sent (empty ones clear what was there).
func (m message) edit(channelID, id string) *discordgo.MessageEdit {
	content, embeds, comps := m.content, m.embeds, m.components
	return &discordgo.MessageEdit{ID: id, Channel: channelID, Content: &content, Embeds: &embeds, Components: &comps,
		AllowedMentions: noMentions(), Files: m.discordFiles()}
}

// webhookEdit is m replacing an interaction's message.
func (m message) webhookEdit() *discordgo.WebhookEdit {
	content, embeds, comps := m.content, m.embeds, m.components
	return &discordgo.WebhookEdit{Content: &content, Embeds: &embeds, Components: &comps,
		AllowedMentions: noMentions(), Files: m.discordFiles()}
}

// followup is m as a followup message of an interaction.
func (m message) followup() *discordgo.WebhookParams {
	return &discordgo.WebhookParams{Content: m.content, Embeds: m.embeds, Components: m.components,
		AllowedMentions: noMentions(), Files: m.discordFiles(), Flags: m.flags()}
}

// hasLinks says whether m carries link buttons.
func (m message) hasLinks() bool {
	for _, c := range m.components {
		if row, ok := c.(discordgo.ActionsRow); ok {
			for _, b := range row.Components {
				if btn, ok := b.(discordgo.Button); ok && btn.Style == discordgo.LinkButton {
					return true
				}
			}
		}
	}
	return false
}

// urlInBrackets keeps a link whole inside <...>, Discord's autolink form.
var urlInBrackets = strings.NewReplacer(" ", "%20", "<", "%3C", ">", "%3E", "\n", "%0A", "\r", "%0D", "\t", "%09")

// linksAsText is m with its link buttons taken out and written as lines of
// content instead ("Receipt: <https://...>"): what goes out when Discord
// refuses a button's URL (it does not take every URL a browser would, such
// as some local addresses), so the message and its link still arrive.
func (m message) linksAsText() message {
	out := m
	out.components = []discordgo.MessageComponent{}
	var lines []string
	for _, c := range m.components {
		row, ok := c.(discordgo.ActionsRow)
		if !ok {
			out.components = append(out.components, c)
			continue
		}
		var keep []discordgo.MessageComponent
		for _, b := range row.Components {
			if btn, ok := b.(discordgo.Button); ok && btn.Style == discordgo.LinkButton {
				lines = append(lines, escape(btn.Label)+": <"+urlInBrackets.Replace(btn.URL)+">")
				continue
			}
			keep = append(keep, b)
		}
		if len(keep) > 0 {
			out.components = append(out.components, discordgo.ActionsRow{Components: keep})
		}
	}
	if len(lines) > 0 {
		text := strings.Join(lines, "\n")
		if out.content != "" {
			text = out.content + "\n" + text
		}
		out.content = truncate(text, maxContent)
	}
	return out
}

// alert renders a short note as plain content.
func alert(text string, ephemeral bool) message {
	return message{content: truncate(escape(text), maxContent), components: []discordgo.MessageComponent{},
		embeds: []*discordgo.MessageEmbed{}, ephemeral: ephemeral}
}

// render turns a view into one message within Discord's limits: the text in
// embed descriptions (split over several embeds when that keeps it whole,
// otherwise cut, with the whole view attached as a Markdown file), fields,
// the notice as footer, the chart as an attached image, buttons as rows.
func render(v bots.View) message {
	// A scan's table wider than a phone shows goes as a picture of its own
	// (a wrapped table loses its columns); the text keeps the brief.
	table := bots.ScanImage(v)
	if table != nil {
		v.Text = strings.Replace(v.Text, bots.ScanBlock(*v.Report, false), bots.ScanBlock(*v.Report, true), 1)
	}
	v = bots.CleanView(v)
	m := message{components: components(v.Buttons), embeds: []*discordgo.MessageEmbed{}}
	if v.Title == "" && v.Text == "" && len(v.Fields) == 0 && len(v.Image) == 0 && len(v.File) == 0 {
		return m
	}
	title := truncate(escape(v.Title), maxTitle)
	fixed := units(title)
	whole := true
	var footer *discordgo.MessageEmbedFooter
	if v.Notice != "" {
		// Footers do not render Markdown: no escaping.
		footer = &discordgo.MessageEmbedFooter{Text: truncate(v.Notice, maxFooter)}
		fixed += units(footer.Text)
	}
	var fields []*discordgo.MessageEmbedField
	for _, f := range v.Fields {
		name := truncate(escape(f.Name), maxFieldName)
		value := truncate(escape(f.Value), maxFieldValue)
		if name == "" {
			name = "\u200b"
		}
		if value == "" {
			value = "\u200b"
		}
		// Keep room for the text: fields past that go to the attachment.
		if len(fields) == maxFields || fixed+units(name)+units(value) > maxEmbedTotal-textReserve {
			whole = false
			break
		}
		fields = append(fields, &discordgo.MessageEmbedField{Name: name, Value: value})
		fixed += units(name) + units(value)
	}

	var image string
	if len(v.Image) > 0 {
		image = fileName(v.ImageName, "chart.png")
		m.files = append(m.files, file{name: image, contentType: "image/png", data: v.Image})
	}
	if len(v.File) > 0 {
		m.files = append(m.files, file{name: fileName(v.FileName, "report.txt"), contentType: "application/octet-stream", data: v.File})
	}
	var tableName string
	embeds := maxEmbeds
	if table != nil {
		tableName = "scan-" + strings.TrimPrefix(fileName(v.ImageName, "chart.png"), "chart-")
		m.files = append(m.files, file{name: tableName, contentType: "image/png", data: table})
		embeds -= 2 // the table's embed, and the one after it
	}

	lines := escapeLines(strings.Trim(v.Text, "\n"))
	budget := maxEmbedTotal - fixed
	chunks, fits := pack(lines, budget, embeds)
	if !fits || !whole {
		name := "report.md"
		if strings.HasPrefix(image, "chart-") {
			name = "report-" + strings.TrimSuffix(strings.TrimPrefix(image, "chart-"), ".png") + ".md"
		}
		note := "… cut to fit Discord: the whole report is attached as " + escape(name) + "."
		// One embed with the start of the text and the note: several boxes of a
		// cut text read worse than one box and a file.
		chunks, _ = pack(lines, max(min(budget, maxDesc)-units(note)-2, 0), 1)
		if len(chunks) == 0 {
			chunks = []string{note}
		} else {
			chunks[0] += "\n\n" + note
		}
		m.files = append(m.files, file{name: name, contentType: "text/markdown; charset=utf-8", data: []byte(markdown(v))})
	}
	if len(chunks) == 0 {
		chunks = []string{""}
	}
	color := colors[v.Kind]
	if v.Kind == bots.KindFinal && v.Report == nil {
		color = colors[bots.KindInfo] // ended without a report: failed or cancelled
	}
	for i, c := range chunks {
		e := &discordgo.MessageEmbed{Description: c, Color: color}
		if i == 0 {
			e.Title = title
		}
		m.embeds = append(m.embeds, e)
	}
	last := m.embeds[len(m.embeds)-1]
	if tableName != "" {
		// The table in an embed of its own, then one for the charge, the
		// notice and the chart (an embed shows one image).
		m.embeds = append(m.embeds, &discordgo.MessageEmbed{Color: color, Image: &discordgo.MessageEmbedImage{URL: "attachment://" + tableName}})
		last = &discordgo.MessageEmbed{Color: color}
		m.embeds = append(m.embeds, last)
	}
	last.Fields, last.Footer = fields, footer
	if image != "" {
		last.Image = &discordgo.MessageEmbedImage{URL: "attachment://" + image}
	}
	if first := m.embeds[0]; len(m.embeds) == 1 && first.Title == "" && first.Description == "" && first.Fields == nil &&
		first.Image == nil && first.Footer == nil {
		first.Description = "\u200b" // Discord refuses an empty embed
	}
	return m
}

// textReserve is the room fields leave for the text of a view.
const textReserve = 1000

// pack fills up to n descriptions of at most maxDesc units, budget units in
// all, with whole lines (a line longer than a description is cut). fits is
// false when something was cut or left out.
func pack(lines []string, budget, n int) (chunks []string, fits bool) {
	fits = true
	var cur strings.Builder
	curUnits, used := 0, 0
	for _, line := range lines {
		lu := units(line)
		if lu > maxDesc {
			line, fits = truncate(line, maxDesc), false
			lu = units(line)
		}
		sep := 0
		if curUnits > 0 {
			sep = 1
			if curUnits+1+lu > maxDesc { // start the next description
				chunks = append(chunks, cur.String())
				cur.Reset()
				curUnits, sep = 0, 0
				if len(chunks) == n {
					return chunks, false
				}
			}
		}
		if used+sep+lu > budget {
			if room := budget - used - sep; room > 1 {
				if sep == 1 {
					cur.WriteByte('\n')
				}
				cur.WriteString(truncate(line, room))
			}
			if cur.Len() > 0 {
				chunks = append(chunks, cur.String())
			}
			return chunks, false
		}
		if sep == 1 {
			cur.WriteByte('\n')
		}
		cur.WriteString(line)
		curUnits += sep + lu
		used += sep + lu
	}
	if cur.Len() > 0 {
		chunks = append(chunks, cur.String())
	}
	return chunks, fits
}

// markdown is the whole view as a Markdown document (the attachment of a
// report too long for embeds).
func markdown(v bots.View) string {
	var b strings.Builder
	b.WriteString("# " + v.Title + "\n\n")
	b.WriteString(v.Text + "\n")
	for _, f := range v.Fields {
		b.WriteString("\n**" + f.Name + "**: " + f.Value + "\n")
	}
	if v.Notice != "" && !strings.Contains(v.Text, v.Notice) {
		b.WriteString("\n_" + v.Notice + "_\n")
	}
	return b.String()
}

// components renders button rows: at most 5 rows of 5; a button whose
// payload is empty or too long for a custom_id, or whose link is not http(s),
// is left out rather than failing the whole message.
func components(rows [][]bots.Button) []discordgo.MessageComponent {
	out := []discordgo.MessageComponent{}
	var row []discordgo.MessageComponent
	flush := func() {
		if len(row) > 0 && len(out) < maxRows {
			out = append(out, discordgo.ActionsRow{Components: row})
		}
		row = nil
	}
	// Grouped buttons (a quote's depths) become one select menu each, on a
	// row of its own after the buttons; an option's value is its payload.
	var selects []*discordgo.SelectMenu
	groups := map[string]*discordgo.SelectMenu{}
	for _, r := range rows {
		for _, b := range r {
			if b.Group == "" || b.Data == "" || len(b.Data) > maxCustomID {
				continue
			}
			menu := groups[b.Group]
			if menu == nil {
				menu = &discordgo.SelectMenu{MenuType: discordgo.StringSelectMenu, CustomID: "select:" + b.Group,
					Placeholder: "Change " + b.Group}
				groups[b.Group] = menu
				selects = append(selects, menu)
			}
			if len(menu.Options) < 25 {
				menu.Options = append(menu.Options, discordgo.SelectMenuOption{Label: truncate(b.Label, maxLabel), Value: b.Data})
			}
		}
	}
	for _, r := range rows {
		for _, b := range r {
			if b.Group != "" && b.Data != "" {
				continue // in its select menu
			}
			btn := discordgo.Button{Label: truncate(b.Label, maxLabel)}
			if btn.Label == "" {
				btn.Label = "…"
			}
			switch {
			case b.URL != "":
				if !strings.HasPrefix(b.URL, "https://") && !strings.HasPrefix(b.URL, "http://") {
					continue
				}
				btn.Style, btn.URL = discordgo.LinkButton, b.URL
			case b.Data != "" && len(b.Data) <= maxCustomID:
				btn.CustomID = b.Data
				switch b.Style {
				case "primary":
					btn.Style = discordgo.PrimaryButton
				case "danger":
					btn.Style = discordgo.DangerButton
				default:
					btn.Style = discordgo.SecondaryButton
				}
			default:
				continue
			}
			if len(row) == maxPerRow {
				flush()
			}
			row = append(row, btn)
		}
		flush()
	}
	for _, m := range selects {
		if len(out) < maxRows {
			out = append(out, discordgo.ActionsRow{Components: []discordgo.MessageComponent{*m}})
		}
	}
	return out
}

var fileNameRE = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// fileName makes an attachment name safe for the multipart header and for an
// attachment:// URL.
func fileName(name, def string) string {
	name = fileNameRE.ReplaceAllString(name, "_")
	name = strings.TrimLeft(name, ".")
	if name == "" {
		return def
	}
	if len(name) > 100 {
		name = name[len(name)-100:]
	}
	return name
}

// escaper backslash-escapes Markdown that Discord renders anywhere in a line.
var escaper = strings.NewReplacer(
	`\`, `\\`, "*", `\*`, "_", `\_`, "~", `\~`, "`", "\\`", "|", `\|`, "[", `\[`, "]", `\]`, "<", `\<`,
)

// escape makes text show literally in Discord Markdown: inline markers
// everywhere, and headings, quotes and list markers at line starts.
func escape(s string) string {
	return strings.Join(escapeLines(research.CleanText(s)), "\n")
}

func escapeLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		l = escaper.Replace(l)
		trimmed := strings.TrimLeft(l, " \t")
		indent := l[:len(l)-len(trimmed)]
		switch {
		case trimmed == "":
		case strings.ContainsRune("#>-+", rune(trimmed[0])):
			l = indent + `\` + trimmed
		case trimmed[0] >= '0' && trimmed[0] <= '9':
			j := strings.IndexFunc(trimmed, func(r rune) bool { return r < '0' || r > '9' })
			if j > 0 && trimmed[j] == '.' {
				l = indent + trimmed[:j] + `\` + trimmed[j:]
			}
		}
		lines[i] = l
	}
	return lines
}

// units is the length Discord counts: UTF-16 code units.
func units(s string) int {
	n := 0
	for _, r := range s {
		n += max(utf16.RuneLen(r), 1)
	}
	return n
}

// truncate cuts s to at most n units, marking the cut with "…" and never
// leaving a dangling escape backslash.
func truncate(s string, n int) string {
	if units(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	limit, used := n-1, 0
	end := 0
	for i, r := range s {
		ru := max(utf16.RuneLen(r), 1)
		if used+ru > limit {
			break
		}
		used += ru
		end = i + len(string(r))
	}
	out := s[:end]
	// An odd run of trailing backslashes would escape the ellipsis.
	trail := len(out) - len(strings.TrimRight(out, `\`))
	if trail%2 == 1 {
		out = out[:len(out)-1]
	}
	return out + "…"
}
