package market

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCSVRealAAPL(t *testing.T) {
	t.Parallel()
	p := NewCSV("testdata")
	all, err := p.History(context.Background(), "aapl", 10*365*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	if all.Symbol != "AAPL" || all.Source != "csv" || all.Synthetic || p.Synthetic() || p.Name() != "csv" {
		t.Errorf("header %s %s %v", all.Symbol, all.Source, all.Synthetic)
	}
	if len(all.Bars) != 506 {
		t.Fatalf("%d bars, want 506", len(all.Bars))
	}
	first, last := all.Bars[0], all.Bars[505]
	want0 := Bar{Date: time.Date(2015, 2, 17, 0, 0, 0, 0, time.UTC), Open: 127.489998, High: 128.880005, Low: 126.919998, Close: 127.830002, Volume: 63152400}
	if first != want0 {
		t.Errorf("first bar %+v", first)
	}
	if last.Date != time.Date(2017, 2, 16, 0, 0, 0, 0, time.UTC) || last.Close != 135.350006 || last.Volume != 22118000 {
		t.Errorf("last bar %+v", last)
	}

	// Lookback counts back from the file's last bar, not from today: 30 days before 2017-02-16 is
	// 2017-01-17, the first bar kept.
	month, err := p.History(context.Background(), "AAPL", 30*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	if got := month.Bars[0].Date.Format(time.DateOnly); got != "2017-01-17" || !month.AsOf().Equal(last.Date) {
		t.Errorf("30-day lookback starts %s, ends %s", got, month.AsOf())
	}
	if len(month.Bars) != 23 {
		t.Errorf("30-day lookback has %d bars, want 23", len(month.Bars))
	}
}

func writeCSV(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCSVFormats(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Yahoo's download format: Adj Close, and "null" rows on days without data.
	writeCSV(t, dir, "BRK-B.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n"+
		"2024-01-02,10,11,9,10.5,10.4,100\n"+
		"2024-01-03,null,null,null,null,null,null\n"+
		"2024-01-04,10.5,12,10,11,10.9,200\n")
	// Another order, other case, a byte-order mark, CRLF line ends and a trailing blank line.
	writeCSV(t, dir, "^GSPC.csv", "\ufeffclose,DATE,volume,high,low,open\r\n5,2024-01-02,0,6,4,5\r\n\r\n")

	p := NewCSV(dir)
	s, err := p.History(context.Background(), "BRK.B", 365*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Bars) != 2 || s.Bars[1].Close != 11 || s.Bars[1].Volume != 200 || s.Symbol != "BRK-B" {
		t.Errorf("BRK-B: %+v", s)
	}
	g, err := p.History(context.Background(), "^gspc", 365*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Bars) != 1 || g.Bars[0] != (Bar{Date: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), Open: 5, High: 6, Low: 4, Close: 5}) {
		t.Errorf("^GSPC: %+v", g.Bars)
	}
}

func TestCSVErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	header := "Date,Open,High,Low,Close,Volume\n"
	files := map[string]string{
		"EMPTY":   "",
		"HEADER":  header,
		"NOVOL":   "Date,Open,High,Low,Close\n2024-01-02,1,1,1,1\n",
		"BADDATE": header + "2024-01-02,1,1,1,1,1\n02/01/2024,1,1,1,1,1\n",
		"BADNUM":  header + "2024-01-02,1,1,1,abc,1\n",
		"NEG":     header + "2024-01-02,1,1,1,-1,1\n",
		"ORDER":   header + "2024-01-03,1,1,1,1,1\n2024-01-02,1,1,1,1,1\n",
		"DUP":     header + "2024-01-02,1,1,1,1,1\n2024-01-02,1,1,1,1,1\n",
		"QUOTE":   header + "2024-01-02,\"1,1,1,1,1\n",
	}
	for name, content := range files {
		writeCSV(t, dir, name+".csv", content)
	}
	p := NewCSV(dir)
	for _, tc := range []struct {
		sym  string
		want error
		text string
	}{
		{"MISSING", ErrUnknownSymbol, "no file MISSING.csv"},
		{"EMPTY", ErrNoData, ""},
		{"HEADER", ErrNoData, ""},
		{"NOVOL", ErrMalformed, `no "volume" column`},
		{"BADDATE", ErrMalformed, "line 3"},
		{"BADNUM", ErrMalformed, "line 2: close"},
		{"NEG", ErrMalformed, "line 2"},
		{"ORDER", ErrMalformed, "does not come after"},
		{"DUP", ErrMalformed, "does not come after"},
		{"QUOTE", ErrMalformed, ""},
		{"../" + filepath.Base(dir) + "/HEADER", ErrInvalidSymbol, ""},
		{"..", ErrInvalidSymbol, ""},
		{"A/B", ErrInvalidSymbol, ""},
	} {
		_, err := p.History(context.Background(), tc.sym, 365*dayDur)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: err = %v, want %v containing %q", tc.sym, err, tc.want, tc.text)
		}
	}
}

func TestCSVRefusesSymlinkOutOfFolder(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	writeCSV(t, outside, "SECRET.csv", "Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,1\n")
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "SECRET.csv"), filepath.Join(dir, "LEAK.csv")); err != nil {
		t.Fatal(err)
	}
	if s, err := NewCSV(dir).History(context.Background(), "LEAK", 365*dayDur); err == nil {
		t.Fatalf("read through a symlink out of the folder: %+v", s)
	}
}
