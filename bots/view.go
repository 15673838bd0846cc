package bots

import (
	"time"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research"
)

// Incoming is one thing a user did on a platform: a command or a button press.
type Incoming struct {
	Identity  billing.Identity
	Chat      Chat
	Text      string // a command line, e.g. "/research NVDA quick"
	Button    string // an opaque button payload; untrusted
	MessageID string // the message the button was on (for edits)
	// Delivery is the platform's id of this delivery when no message names
	// it (a Discord interaction's id): it keys what a redelivered command
	// must not do twice.
	Delivery string
	// Token and At carry a platform credential for editing later (a
	// Discord interaction token) and when it was issued.
	Token string
	At    time.Time
	// Admin is set by an adapter when the platform itself says the user is an
	// admin (a configured Discord role, a Telegram chat administrator when so
	// configured): they may act on others' runs.
	Admin bool
}

// Chat is where something happened.
type Chat struct {
	Platform string
	ID       string
	Group    bool
}

// Kind names what a view shows, so adapters can style it.
type Kind string

const (
	KindInfo     Kind = "info"
	KindQuote    Kind = "quote"
	KindProgress Kind = "progress"
	KindFinal    Kind = "final"
	KindError    Kind = "error"
)

// View is a platform-neutral message: adapters render it within their limits
// and markup. Text never carries markup: adapters escape it.
type View struct {
	Kind    Kind
	Title   string
	Text    string
	Fields  []Field
	Buttons [][]Button
	// Image is a PNG to attach (the chart); File a document (a long report).
	Image     []byte
	ImageName string
	File      []byte
	FileName  string
	Report    *research.Report // with KindFinal, for adapters that render it richly
	Notice    string           // the not-financial-advice notice, on final views
	Final     bool             // the last state of a message: the outbox never drops it
	Private   bool             // show only to the user who asked, where the platform can
	// Public is what a group sees of a private view on a platform that
	// cannot show one member a message (Telegram): the same card without
	// any balance, shortfall, ledger line or usage figure, with the same
	// buttons. The full view then goes to the user's private chat. nil: the
	// view has nothing to show the group.
	Public *View
	// Invoice asks the platform for a native payment (Telegram Stars); an
	// adapter without one shows Text.
	Invoice *Invoice
}

// Field is a labelled value.
type Field struct {
	Name, Value string
}

// Button is a button: an action with an opaque payload, or a link.
type Button struct {
	Label string
	Data  string // payload; at most 60 bytes, verified against the store when pressed
	URL   string // a link button instead
	Style string // "primary", "danger" or ""
	// Group names alternatives (the depths of a quote): an adapter may show a
	// group's buttons as one select menu whose options carry their Data.
	Group string
}

// Reply is what the conversation answers to an Incoming.
type Reply struct {
	View View
	// Edit replaces the message the button was on instead of sending a new one.
	Edit bool
	// Alert is a short note for the presser alone (a callback answer or an
	// ephemeral message), e.g. a refusal.
	Alert string
	// Refused marks an Alert that says the press did nothing (forbidden,
	// stale, invalid): one the presser must see even if it comes late.
	Refused bool
	// RunID is set on the reply that confirmed a run: an adapter that shows
	// progress in another message than the quote's calls MoveRun with it.
	// RunVersion is the version of the run its View shows: an adapter edits
	// a message with it only through Conversation.EditRun, so the card never
	// replaces a newer view of the run (its final, say) sent meanwhile.
	RunID      string
	RunVersion int64
}

// CleanView returns v with research.CleanText applied to every string it
// shows (title, text, fields, button labels, notice, the report's parts):
// model output and user-supplied names carry no control or bidi character
// to any platform. Every adapter renders only cleaned views.
func CleanView(v View) View {
	c := research.CleanText
	v.Title, v.Text, v.Notice = c(v.Title), c(v.Text), c(v.Notice)
	if v.Fields != nil {
		fields := make([]Field, len(v.Fields))
		for i, f := range v.Fields {
			fields[i] = Field{Name: c(f.Name), Value: c(f.Value)}
		}
		v.Fields = fields
	}
	if v.Buttons != nil {
		rows := make([][]Button, len(v.Buttons))
		for i, row := range v.Buttons {
			rows[i] = make([]Button, len(row))
			for j, b := range row {
				b.Label = c(b.Label)
				rows[i][j] = b
			}
		}
		v.Buttons = rows
	}
	if v.Report != nil {
		rep := CleanReport(*v.Report)
		v.Report = &rep
	}
	if v.Public != nil {
		pub := CleanView(*v.Public)
		v.Public = &pub
	}
	return v
}

// CleanReport is CleanView for a report.
func CleanReport(rep research.Report) research.Report {
	c := research.CleanText
	rep.Title, rep.DataSource, rep.Model, rep.Notice = c(rep.Title), c(rep.DataSource), c(rep.Model), c(rep.Notice)
	rep.Synthesis, rep.Bull, rep.Bear, rep.Risks, rep.Missing = c(rep.Synthesis), c(rep.Bull), c(rep.Bear), c(rep.Risks), c(rep.Missing)
	secs := make([]research.Section, len(rep.Sections))
	for i, s := range rep.Sections {
		figs := make([]research.Figure, len(s.Figures))
		for j, f := range s.Figures {
			figs[j] = research.Figure{Label: c(f.Label), Value: c(f.Value)}
		}
		secs[i] = research.Section{Symbol: c(s.Symbol), Figures: figs, Text: c(s.Text)}
	}
	rep.Sections = secs
	if rep.Failed != nil {
		failed := make(map[string]string, len(rep.Failed))
		for k, v := range rep.Failed {
			failed[c(k)] = c(v)
		}
		rep.Failed = failed
	}
	return rep
}
