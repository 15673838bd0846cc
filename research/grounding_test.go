package research

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestCheckGrounding(t *testing.T) {
	t.Parallel()
	data := `{"close": 135.350006, "figures": [{"label": "Max drawdown (2016-08-18 to 2017-02-16)", "value": "-10.6%"}, {"label": "Volume", "value": "0.67x"}], "split": "4:1"}`
	for _, tc := range []struct {
		text    string
		unfound []string
	}{
		{"AAPL closed at 135.35 (about 135) after falling 10.6% from 2016-08-18; volume 0.67x; 3 bull points. 1. AAPL.", nil},
		{"AAPL closed at 135.40 and SMA50 is up; a 4:1 split.", []string{"135.40"}},
		{"The target is 180 by 2017-06-30 after a 2:1 split.", []string{"2017-06-30", "2:1", "180"}},
		{"Volatility is 21.6% and the volume ratio 1.35x.", []string{"21.6", "1.35"}},
	} {
		g := CheckGrounding(tc.text, data)
		if !slices.Equal(g.Unfound, tc.unfound) && !(len(g.Unfound) == 0 && len(tc.unfound) == 0) {
			t.Errorf("%q: unfound %v, want %v", tc.text, g.Unfound, tc.unfound)
		}
		if (g.Note() == "") != (len(tc.unfound) == 0) {
			t.Errorf("%q: note %q", tc.text, g.Note())
		}
	}
	g := CheckGrounding("Made up: 111.1, 222.2.", data)
	if g.Note() != "Grounding check: 2 figures in this answer are not from the data: 111.1, 222.2." || g.Checked != 2 {
		t.Errorf("note %q, checked %d", g.Note(), g.Checked)
	}
}

// Every figure the offline analyst writes comes from the data it was given, at every depth and stage: the
// grounding check finds them all, which tests both the analyst and the check.
func TestOfflineAnalystIsGrounded(t *testing.T) {
	t.Parallel()
	d := aaplData(t)
	d.Signals = []string{"AAPL: RSI 14 is 88.7, above 70"}
	for _, depth := range []Depth{Quick, Standard, Deep} {
		d.Depth = string(depth)
		for _, st := range Plans[depth].Stages([]string{"AAPL"}) {
			if st.Kind != StageLLM {
				continue
			}
			req := buildPrompt(st, d, 900)
			back, err := parseDataBlock(req)
			if err != nil {
				t.Fatal(err)
			}
			text := offlineText(back)
			data, _ := json.Marshal(back)
			if g := CheckGrounding(text, string(data)); !g.OK() || g.Checked < 1 {
				t.Errorf("%s %s: %s (checked %d)\n%s", depth, st.Name, g.Note(), g.Checked, text)
			}
		}
	}
	// And a made-up figure in the same text is caught.
	text := offlineText(d) + " The price target is 171.23."
	data, _ := json.Marshal(d)
	if g := CheckGrounding(text, string(data)); len(g.Unfound) != 1 || g.Unfound[0] != "171.23" {
		t.Errorf("made-up figure: %+v", g)
	}
	if !strings.Contains(grounded(text, string(data)), "1 figure in this answer is not from the data: 171.23") {
		t.Error("grounded does not append the note")
	}
}
