package research

import (
	"strings"
	"time"
)

// Notice ends every report and every final message.
const Notice = "Not financial advice. forgebot's research is generated from market data by software and may be wrong; do your own research before you trade."

// Report is a run's result, structured so each adapter can render it within
// its platform's limits.
type Report struct {
	Title      string    `json:"title"`
	AsOf       time.Time `json:"as_of"`
	DataSource string    `json:"data_source"`
	Synthetic  bool      `json:"synthetic"`
	RuleBased  bool      `json:"rule_based"` // written by the offline analyst, not an LLM
	Model      string    `json:"model"`
	Sections   []Section `json:"sections"`
	// Scan is a scan's ranked table of every watchlist symbol (see ScanText, ScanCSV); CSV asks for it as a
	// file too.
	Scan []ScanRow `json:"scan,omitempty"`
	CSV  bool      `json:"csv,omitempty"`
	// Overview is a quick run's one report over all symbols; Synthesis is the closing section of a
	// standard or deep run, written from the sections before it.
	Overview  string            `json:"overview,omitempty"`
	Synthesis string            `json:"synthesis,omitempty"`
	Bull      string            `json:"bull,omitempty"`
	Bear      string            `json:"bear,omitempty"`
	Risks     string            `json:"risks,omitempty"`
	Failed    map[string]string `json:"failed,omitempty"`  // symbol -> why it is missing
	Missing   string            `json:"missing,omitempty"` // a whole-run part (synthesis, bull case...) that failed, and why
	Notice    string            `json:"notice"`
	// An agent run's question (its answer is Overview) and its steps.
	Question string     `json:"question,omitempty"`
	Steps    []StepLine `json:"steps,omitempty"`
}

// Section is one symbol's part of a report.
type Section struct {
	Symbol string `json:"symbol"`
	// AsOf is the symbol's own last final bar; Context says its zone, currency, precision, calendar and
	// whether a live bar was left out; Warnings its data problems (stale, suspect jumps).
	AsOf     time.Time `json:"as_of"`
	Context  string    `json:"context,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
	Figures  []Figure  `json:"figures"`
	Text     string    `json:"text"`
}

// AsOfText is the report's dating for its header: "as of 2020-11-06" when every symbol shares its last bar's
// date, else each symbol's own ("as of AAPL 2020-11-06, BTC-USD 2020-01-03"), so that no symbol is dated by
// another's bars.
func (r Report) AsOfText() string {
	var parts []string
	same := true
	for i, s := range r.Sections {
		parts = append(parts, s.Symbol+" "+s.AsOf.Format(time.DateOnly))
		if i > 0 && !s.AsOf.Equal(r.Sections[0].AsOf) {
			same = false
		}
	}
	switch {
	case len(r.Sections) == 0:
		return "as of " + r.AsOf.Format(time.DateOnly)
	case same:
		return "as of " + r.Sections[0].AsOf.Format(time.DateOnly)
	}
	return "as of " + strings.Join(parts, ", ")
}

// Figure is one key figure in a section's table.
type Figure struct {
	Label string `json:"label"`
	Value string `json:"value"`
}
