package market

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// CSV reads history from a folder of SYMBOL.csv files, for people who bring their own data. Each file has a
// header row naming at least Date, Open, High, Low, Close and Volume (any order, any case; an "Adj Close"
// column is tolerated and ignored, because mixing adjusted closes with unadjusted open/high/low would make
// bars inconsistent). Dates are YYYY-MM-DD. Rows whose prices are "null" or empty (as in Yahoo's own CSV
// downloads) are skipped. Rows must be in ascending date order, one per day.
//
// A file's as-of is its last bar, so lookback counts back from there, not from today.
type CSV struct {
	dir string
}

var _ Provider = (*CSV)(nil)

// NewCSV returns a provider reading dir/SYMBOL.csv, where SYMBOL is the normalised symbol ("BRK-B.csv").
func NewCSV(dir string) *CSV { return &CSV{dir: dir} }

// Name implements Provider.
func (c *CSV) Name() string { return "csv" }

// Synthetic implements Provider: the files are taken to be real data.
func (c *CSV) Synthetic() bool { return false }

// History implements Provider: it returns the bars dated from the last bar's date minus lookback onwards.
// A missing file is ErrUnknownSymbol.
func (c *CSV) History(ctx context.Context, symbol string, lookback time.Duration) (Series, error) {
	sym, err := NormalizeSymbol(symbol)
	if err != nil {
		return Series{}, fmt.Errorf("csv: %w", err)
	}
	if lookback <= 0 {
		return Series{}, fmt.Errorf("csv: %s: lookback must be positive, got %s", sym, lookback)
	}
	if err := ctx.Err(); err != nil {
		return Series{}, fmt.Errorf("csv: %s: %w", sym, context.Cause(ctx))
	}
	// NormalizeSymbol already rules out separators and "..", and OpenInRoot also refuses symlinks that lead
	// out of the folder, so a symbol can only ever name a file inside it.
	f, err := os.OpenInRoot(c.dir, sym+".csv")
	if errors.Is(err, fs.ErrNotExist) {
		return Series{}, fmt.Errorf("csv: %s: %w: no file %s.csv", sym, ErrUnknownSymbol, sym)
	}
	if err != nil {
		return Series{}, fmt.Errorf("csv: %s: %w: %w", sym, ErrUnavailable, err)
	}
	defer f.Close()
	bars, err := readCSVBars(f)
	if err != nil {
		return Series{}, fmt.Errorf("csv: %s: %w", sym, err)
	}
	if len(bars) == 0 {
		return Series{}, fmt.Errorf("csv: %s: %w: the file has no bars", sym, ErrNoData)
	}
	start := day(bars[len(bars)-1].Date.Add(-lookback))
	i := 0
	for i < len(bars) && bars[i].Date.Before(start) {
		i++
	}
	return Series{Symbol: sym, Bars: bars[i:], Source: "csv", Class: ClassOf(sym, "")}, nil
}

// readCSVBars parses a whole file. Errors wrap ErrMalformed and name the line.
func readCSVBars(r io.Reader) ([]Bar, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	cols := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		cols[h] = i
	}
	names := []string{"date", "open", "high", "low", "close", "volume"}
	idx := make([]int, len(names))
	for i, n := range names {
		j, ok := cols[n]
		if !ok {
			return nil, fmt.Errorf("%w: header has no %q column", ErrMalformed, n)
		}
		idx[i] = j
	}

	var bars []Bar
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		field := func(k int) string {
			if idx[k] >= len(rec) {
				return ""
			}
			return strings.TrimSpace(rec[idx[k]])
		}
		date, err := time.Parse(time.DateOnly, field(0))
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: date %q is not YYYY-MM-DD", ErrMalformed, line, field(0))
		}
		if p := field(4); p == "" || strings.EqualFold(p, "null") {
			continue
		}
		var v [5]float64
		noVol := false
		for k := 1; k <= 5; k++ {
			if k == 5 && (field(k) == "" || strings.EqualFold(field(k), "null")) {
				noVol = true // a missing volume is not a day without trades
				continue
			}
			x, err := strconv.ParseFloat(field(k), 64)
			if err != nil || x < 0 || x != x || x > 1e15 {
				return nil, fmt.Errorf("%w: line %d: %s %q is not a price", ErrMalformed, line, names[k], field(k))
			}
			v[k-1] = x
		}
		if v[3] <= 0 {
			return nil, fmt.Errorf("%w: line %d: close must be positive", ErrMalformed, line)
		}
		if n := len(bars); n > 0 && !date.After(bars[n-1].Date) {
			return nil, fmt.Errorf("%w: line %d: date %s does not come after %s", ErrMalformed, line,
				date.Format(time.DateOnly), bars[n-1].Date.Format(time.DateOnly))
		}
		bars = append(bars, Bar{Date: date, Open: v[0], High: v[1], Low: v[2], Close: v[3], Volume: v[4], NoVolume: noVol})
	}
	return bars, nil
}
