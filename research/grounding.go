package research

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Grounding is the result of checking a model-written text against the data it was given.
type Grounding struct {
	// Checked counts the figures in the text that were checked (small counts and ordinals are not).
	Checked int
	// Unfound are the figures of the text, as written, that no figure in the data rounds to.
	Unfound []string
}

// OK reports whether every checked figure was found in the data.
func (g Grounding) OK() bool { return len(g.Unfound) == 0 }

// Note is the line a reader sees under a text with unfound figures ("2 figures in this answer are not from
// the data: 123.4, 2019-05-01"), or "" when all were found.
func (g Grounding) Note() string {
	switch n := len(g.Unfound); n {
	case 0:
		return ""
	case 1:
		return "Grounding check: 1 figure in this answer is not from the data: " + g.Unfound[0] + "."
	default:
		shown := g.Unfound
		if len(shown) > 8 {
			shown = shown[:8]
		}
		more := ""
		if n > len(shown) {
			more = fmt.Sprintf(" and %d more", n-len(shown))
		}
		return fmt.Sprintf("Grounding check: %d figures in this answer are not from the data: %s%s.", n, strings.Join(shown, ", "), more)
	}
}

var (
	dateRE   = regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}\b`)
	ratioRE  = regexp.MustCompile(`\b\d+:\d+\b`)
	numberRE = regexp.MustCompile(`\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?`)
)

// CheckGrounding finds the figures in text (a model's answer) that are not in data (whatever the model was
// given: the prompt's data block, a table), so that a reader is told when a model made a number up. It is
// meant for any model-written text, not only research reports.
//
// A figure is found when some number in data rounds to it at the decimals it is written with (so "135" and
// "135.4" are both found for 135.350006; "10.6%" for -10.6, because prose drops signs: "fell 10.6%"); a date
// (YYYY-MM-DD) or a ratio ("4:1") must appear in data as written. Whole numbers up to 10 are not checked:
// in prose they are counts and ordinals ("3 bull points", "1."), not data.
func CheckGrounding(text, data string) Grounding {
	var g Grounding
	seen := map[string]bool{}
	unfound := func(s string) {
		if !seen[s] {
			seen[s] = true
			g.Unfound = append(g.Unfound, s)
		}
	}
	for _, d := range dateRE.FindAllString(text, -1) {
		g.Checked++
		if !strings.Contains(data, d) {
			unfound(d)
		}
	}
	text = dateRE.ReplaceAllString(text, " ")
	for _, r := range ratioRE.FindAllString(text, -1) {
		g.Checked++
		if !strings.Contains(data, r) {
			unfound(r)
		}
	}
	text = ratioRE.ReplaceAllString(text, " ")

	var known []float64
	for _, s := range numberRE.FindAllString(dateRE.ReplaceAllStringFunc(data, splitDate), -1) {
		if v, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64); err == nil {
			known = append(known, v)
		}
	}
	for _, loc := range numberRE.FindAllStringIndex(text, -1) {
		s := text[loc[0]:loc[1]]
		// Part of a word ("SMA50", "Q3", "x2") names something; it is not a figure.
		if loc[0] > 0 && isLetter(text[loc[0]-1]) || loc[1] < len(text) && isLetter(text[loc[1]]) && !isUnit(text[loc[1]:]) {
			continue
		}
		v, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
		if err != nil {
			continue
		}
		decimals := 0
		if i := strings.IndexByte(s, '.'); i >= 0 {
			decimals = len(s) - i - 1
		}
		if decimals == 0 && v <= 10 {
			continue
		}
		g.Checked++
		tol := 0.5*math.Pow(10, -float64(decimals)) + 1e-9
		found := false
		for _, k := range known {
			if math.Abs(math.Abs(k)-v) <= tol {
				found = true
				break
			}
		}
		if !found {
			unfound(s)
		}
	}
	return g
}

// splitDate keeps a date's parts from reading as the numbers 2017, -02 and -16 in the data.
func splitDate(d string) string { return strings.ReplaceAll(d, "-", " ") }

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// isUnit reports whether a number is followed by a unit or suffix that still makes it a figure: "1.35x",
// "20d", "52w", "3M", "1D", "5bp".
func isUnit(rest string) bool {
	for _, u := range []string{"x", "d", "w", "m", "M", "D", "W", "Y", "bp", "k", "K", "B"} {
		if strings.HasPrefix(rest, u) && (len(rest) == len(u) || !isLetter(rest[len(u)])) {
			return true
		}
	}
	return false
}
