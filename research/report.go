package research

import "time"

// Notice ends every report and every final message.
const Notice = "Not financial advice. forgebot's research is generated from market data by software and may be wrong; do your own research before you trade."

// Report is a run's result, structured so each adapter can render it within
// its platform's limits.
type Report struct {
	Title      string            `json:"title"`
	AsOf       time.Time         `json:"as_of"`
	DataSource string            `json:"data_source"`
	Synthetic  bool              `json:"synthetic"`
	RuleBased  bool              `json:"rule_based"` // written by the offline analyst, not an LLM
	Model      string            `json:"model"`
	Sections   []Section         `json:"sections"`
	Synthesis  string            `json:"synthesis,omitempty"`
	Bull       string            `json:"bull,omitempty"`
	Bear       string            `json:"bear,omitempty"`
	Risks      string            `json:"risks,omitempty"`
	Failed     map[string]string `json:"failed,omitempty"`  // symbol -> why it is missing
	Missing    string            `json:"missing,omitempty"` // a whole-run part (synthesis, bull case...) that failed, and why
	Notice     string            `json:"notice"`
}

// Section is one symbol's part of a report.
type Section struct {
	Symbol  string   `json:"symbol"`
	Figures []Figure `json:"figures"`
	Text    string   `json:"text"`
}

// Figure is one key figure in a section's table.
type Figure struct {
	Label string `json:"label"`
	Value string `json:"value"`
}
