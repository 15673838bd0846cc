package research

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tokensforge/forgebot/research/market"
)

// ScanRow is one watchlist symbol in a scan's ranked table: every symbol of the watchlist has one, picked or
// not, so a reader sees what the scan looked at and why the top ones were written up.
type ScanRow struct {
	Rank   int    `json:"rank"`
	Symbol string `json:"symbol"`
	AsOf   string `json:"as_of,omitempty"`
	// Close is formatted to the symbol's precision; Return1M (price only, by calendar month), RSI14 and
	// Vol20 (annualised on the symbol's calendar) are formatted figures, "n/a" when unknown.
	Close    string   `json:"close,omitempty"`
	Currency string   `json:"currency,omitempty"`
	Return1M string   `json:"return_1m,omitempty"`
	RSI14    string   `json:"rsi14,omitempty"`
	Vol20    string   `json:"vol20,omitempty"`
	Signals  []string `json:"signals,omitempty"` // kinds of the signals that fired
	Score    float64  `json:"score"`             // the sum of their scores (see market.Signal)
	Picked   bool     `json:"picked"`
	// Why says why a picked symbol was picked, or why one was left out of the ranking (failed, stale,
	// suspect data).
	Why string `json:"why,omitempty"`
}

// scanTable ranks every symbol of a watchlist: by the sum of its signal scores, then by the size of its
// 1-month move; symbols not ranked (stale, suspect) come after, and those without data last. Stale and suspect series raise no signals (their figures
// describe the past or span a data error), and the row says so.
func scanTable(symbols []string, series map[string]market.Series, ind map[string]market.Indicators, failed map[string]string, now time.Time) []ScanRow {
	rows := make([]ScanRow, 0, len(symbols))
	for _, s := range symbols {
		row := ScanRow{Symbol: s}
		ser, ok := series[s]
		if !ok {
			row.Why = "no data: " + failed[s]
			rows = append(rows, row)
			continue
		}
		in := ind[s]
		row.AsOf, row.Close, row.Currency = date(in.AsOf), market.FormatPrice(in.Close, in.Decimals), in.Currency
		row.Return1M, row.RSI14, row.Vol20 = short(pct(in.Return1M)), short(num2(in.RSI14)), short(level(in.Volatility20))
		switch stale := market.Staleness(in, now); {
		case stale != "":
			row.Why = "not ranked: " + stale
		case in.Suspect():
			row.Why = "not ranked: " + in.Warnings[0].Text
		default:
			for _, sg := range market.Signals(ser, in) {
				row.Signals = append(row.Signals, sg.Kind)
				row.Score += sg.Score
			}
		}
		rows = append(rows, row)
	}
	move := func(r ScanRow) float64 {
		in, ok := ind[r.Symbol]
		if !ok || !in.Return1M.OK {
			return -1
		}
		return math.Abs(in.Return1M.V)
	}
	// Ranked rows first, then those not ranked (stale, suspect), then those without data.
	group := func(r ScanRow) int {
		switch {
		case r.Close == "":
			return 2
		case strings.HasPrefix(r.Why, "not ranked"):
			return 1
		}
		return 0
	}
	slices.SortStableFunc(rows, func(a, b ScanRow) int {
		if c := cmp.Compare(group(a), group(b)); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return cmp.Compare(move(b), move(a))
	})
	for i := range rows {
		rows[i].Rank = i + 1
	}
	return rows
}

// short drops the "(not enough history)" of a table cell.
func short(s string) string {
	if strings.HasPrefix(s, "n/a") {
		return "n/a"
	}
	return s
}

// markPicked marks the rows of the picked symbols and says why each was picked.
func markPicked(rows []ScanRow, picked []string, bySignal bool) {
	for i := range rows {
		r := &rows[i]
		if !slices.Contains(picked, r.Symbol) {
			continue
		}
		r.Picked = true
		if bySignal && len(r.Signals) > 0 {
			r.Why = fmt.Sprintf("picked: %d signal(s) (%s), score %.1f, rank %d of %d", len(r.Signals), strings.Join(r.Signals, ", "), r.Score, r.Rank, len(rows))
		} else {
			r.Why = fmt.Sprintf("picked: no signal fired in the watchlist; among the largest 1-month moves (%s)", r.Return1M)
		}
	}
}

// ScanText is a scan's table in fixed-width text, one row per symbol, with the reasons underneath.
func ScanText(rows []ScanRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-3s %-9s %10s %8s %6s %6s %5s  %s\n", "#", "symbol", "close", "1M", "RSI14", "vol20", "score", "signals")
	for _, r := range rows {
		sig := strings.Join(r.Signals, ",")
		if sig == "" {
			sig = "-"
		}
		mark := " "
		if r.Picked {
			mark = "*"
		}
		fmt.Fprintf(&b, "%-3s %-9s %10s %8s %6s %6s %5.1f  %s\n", fmt.Sprint(r.Rank)+mark, r.Symbol, orDash(r.Close), orDash(r.Return1M), orDash(r.RSI14), orDash(r.Vol20), r.Score, sig)
	}
	b.WriteString(scanLegend + "\n")
	for _, r := range rows {
		if r.Why != "" {
			fmt.Fprintf(&b, "%s: %s\n", r.Symbol, r.Why)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// scanLegend says what the table's columns mean.
const scanLegend = "* written up below. 1M: price-only return since the close a calendar month before each symbol's as-of; vol20: 20-day volatility annualised on the symbol's calendar; score: sum of signal scores."

// ScanFitsText reports whether the scan's fixed-width table (ScanText) fits a chat client cols characters
// wide without wrapping its rows, which would break its columns.
func ScanFitsText(rows []ScanRow, cols int) bool {
	// The header and one line per row; the legend and reasons under them are prose, which wraps fine.
	lines := strings.Split(ScanText(rows), "\n")
	for _, l := range lines[:min(len(rows)+1, len(lines))] {
		if utf8.RuneCountInString(l) > cols {
			return false
		}
	}
	return true
}

// ScanBrief is what a chat message says of the scan when its table goes as a picture (ScanImage): how many
// symbols were ranked, and why the picked ones were picked and others not ranked, so the text alone still
// answers why.
func ScanBrief(rows []ScanRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d symbols ranked: the table is in the picture (add csv to the command for a spreadsheet).", len(rows))
	for _, r := range rows {
		if r.Why != "" {
			fmt.Fprintf(&b, "\n#%d %s: %s", r.Rank, r.Symbol, r.Why)
		}
	}
	return b.String()
}

// ScanImage draws the scan's ranked table as a PNG (market.TablePNG) for chat clients where the table does not
// fit as text: one row per symbol with its own as-of date, the picked ones highlighted, those not ranked in
// grey, the legend and the reasons under it. A synthetic report's picture says so in its title and at its
// foot, so that it cannot travel without the caveat.
func ScanImage(rep Report) ([]byte, error) {
	title := rep.Title + ": ranked watchlist; data: " + rep.DataSource
	if rep.Synthetic {
		title = "SYNTHETIC DATA: " + title
	}
	t := market.Table{Title: title, Header: []string{"#", "Symbol", "As of", "Close", "1M", "RSI14", "Vol20", "Score", "Signals"},
		Right: []bool{true, false, false, true, true, true, true, true, false}}
	for _, r := range rep.Scan {
		sig := strings.Join(r.Signals, ", ")
		if sig == "" {
			sig = "-"
		}
		rank := fmt.Sprint(r.Rank)
		if r.Picked {
			rank += "*"
		}
		price := orDash(r.Close)
		if r.Close != "" && r.Currency != "" {
			price += " " + r.Currency
		}
		t.Rows = append(t.Rows, []string{rank, r.Symbol, orDash(r.AsOf), price, orDash(r.Return1M), orDash(r.RSI14), orDash(r.Vol20), fmt.Sprintf("%.1f", r.Score), sig})
		t.Mark = append(t.Mark, r.Picked)
		t.Muted = append(t.Muted, !r.Picked && r.Why != "")
	}
	t.Notes = append(t.Notes, scanLegend)
	for _, r := range rep.Scan {
		if r.Why != "" {
			t.Notes = append(t.Notes, r.Symbol+": "+r.Why)
		}
	}
	if rep.Synthetic {
		t.Notes = append(t.Notes, "SYNTHETIC demo data, not real prices.")
	}
	return market.TablePNG(t)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ScanCSV is a scan's table as CSV, with a header row, for a spreadsheet.
func ScanCSV(rows []ScanRow) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"rank", "symbol", "as_of", "close", "currency", "return_1m", "rsi14", "vol20", "score", "signals", "picked", "why"})
	for _, r := range rows {
		w.Write([]string{fmt.Sprint(r.Rank), r.Symbol, r.AsOf, r.Close, r.Currency, r.Return1M, r.RSI14, r.Vol20,
			fmt.Sprintf("%.2f", r.Score), strings.Join(r.Signals, " "), fmt.Sprint(r.Picked), r.Why})
	}
	w.Flush()
	return buf.Bytes()
}

// scanNotes are the signals of the picked symbols, as "SYMBOL: detail" lines for the prompt and the quote.
func scanNotes(series map[string]market.Series, ind map[string]market.Indicators, picked []string) []string {
	var out []string
	for _, s := range picked {
		for _, sg := range market.Signals(series[s], ind[s]) {
			out = append(out, s+": "+sg.Detail)
		}
	}
	return out
}

// scanPromptNotes are what a scan's prompt says of its picks: their signals and why each was picked. The
// quote and the run build them the same way, so the run's prompt is the size the quote priced.
func scanPromptNotes(series map[string]market.Series, ind map[string]market.Indicators, picked []string, rows []ScanRow) []string {
	out := scanNotes(series, ind, picked)
	for _, row := range rows {
		if row.Picked {
			out = append(out, row.Symbol+": "+row.Why)
		}
	}
	return out
}
