package market

import (
	"context"
	"math"
	"reflect"
	"testing"
	"time"
)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestDemoIsDeterministicAndLabelled(t *testing.T) {
	t.Parallel()
	today := time.Date(2026, 3, 11, 15, 30, 0, 0, time.UTC) // a Wednesday
	d := NewDemo(fixedClock(today))
	if !d.Synthetic() || d.Name() != "demo" {
		t.Fatal("demo provider must say it is synthetic")
	}
	ctx := context.Background()
	a1, err := d.History(ctx, "aapl", 400*dayDur)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := NewDemo(fixedClock(today)).History(ctx, "AAPL", 400*dayDur)
	if !reflect.DeepEqual(a1, a2) {
		t.Error("same symbol and day gave different series")
	}
	if !a1.Synthetic || a1.Source != "demo" || a1.Symbol != "AAPL" {
		t.Errorf("series not labelled: %+v", Series{Symbol: a1.Symbol, Source: a1.Source, Synthetic: a1.Synthetic})
	}
	if !a1.AsOf().Equal(time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("as of %s, want today", a1.AsOf())
	}
	if first := a1.Bars[0].Date; first.Before(today.Add(-401*dayDur)) || first.After(today.Add(-397*dayDur)) {
		t.Errorf("400-day lookback starts %s", first)
	}

	m, _ := d.History(ctx, "MSFT", 400*dayDur)
	if m.Bars[len(m.Bars)-1].Close == a1.Bars[len(a1.Bars)-1].Close {
		t.Error("two symbols share a walk")
	}

	// The bar of a given date does not depend on the lookback or on which day asked.
	later, _ := NewDemo(fixedClock(today.AddDate(0, 0, 30))).History(ctx, "AAPL", 800*dayDur)
	byDate := map[time.Time]Bar{}
	for _, b := range later.Bars {
		byDate[b.Date] = b
	}
	for _, b := range a1.Bars {
		if byDate[b.Date] != b {
			t.Fatalf("bar of %s changed with lookback/today: %+v vs %+v", b.Date.Format(time.DateOnly), b, byDate[b.Date])
		}
	}
}

func TestDemoIsPlausible(t *testing.T) {
	t.Parallel()
	today := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC) // a Saturday
	d := NewDemo(fixedClock(today))
	for _, sym := range []string{"AAPL", "MSFT", "NVDA", "XLK", "BRK-B", "^GSPC", "EURUSD=X", "BTC-USD", "7203.T", "Z"} {
		s, err := d.History(context.Background(), sym, 3*365*dayDur)
		if err != nil {
			t.Fatal(err)
		}
		crypto := sym == "BTC-USD"
		wantLast := time.Date(2026, 3, 13, 0, 0, 0, 0, time.UTC) // Friday
		if crypto {
			wantLast = today
		}
		if !s.AsOf().Equal(wantLast) {
			t.Errorf("%s: as of %s, want %s", sym, s.AsOf().Format(time.DateOnly), wantLast.Format(time.DateOnly))
		}
		weekend := false
		for i, b := range s.Bars {
			if !(b.Low <= b.Open && b.Low <= b.Close && b.Open <= b.High && b.Close <= b.High && b.Low > 0 && b.Volume > 0) {
				t.Fatalf("%s bar %s inconsistent: %+v", sym, b.Date.Format(time.DateOnly), b)
			}
			if i > 0 && !b.Date.After(s.Bars[i-1].Date) {
				t.Fatalf("%s: dates not ascending at %d", sym, i)
			}
			if wd := b.Date.Weekday(); wd == time.Saturday || wd == time.Sunday {
				weekend = true
			}
		}
		if weekend != crypto {
			t.Errorf("%s: weekend bars %v", sym, weekend)
		}
		// Realised volatility in the range of real assets, not a flat line or a lottery ticket.
		vol := Volatility(s.Closes(), len(s.Bars)-1)[len(s.Bars)-1]
		if vol < 3 || vol > 120 {
			t.Errorf("%s: annualised volatility %.1f%%", sym, vol)
		}
		if c := s.Bars[len(s.Bars)-1].Close; c < 0.5 || c > 50000 || math.IsNaN(c) {
			t.Errorf("%s: last close %v", sym, c)
		}
	}
}

func TestDemoErrors(t *testing.T) {
	t.Parallel()
	d := NewDemo(fixedClock(time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC)))
	if _, err := d.History(context.Background(), "../x", dayDur); err == nil {
		t.Error("invalid symbol accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.History(ctx, "AAPL", dayDur); err == nil {
		t.Error("cancelled context ignored")
	}
	early := NewDemo(fixedClock(time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)))
	if _, err := early.History(context.Background(), "AAPL", dayDur); err == nil {
		t.Error("demo invented data before its epoch")
	}
}

// TestDemoWalkCache: a walk served from the cache is the walk generated afresh, from any start, and the
// bars a caller gets are its own: changing them changes no later fetch.
func TestDemoWalkCache(t *testing.T) {
	end := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	start := end.AddDate(-1, 0, 0)
	fresh := generateWalk("CACHEDSYM", end)
	first := demoWalk("CACHEDSYM", start, end) // generates and caches
	if len(first) == 0 || first[0].Date.Before(start) || first[len(first)-1].Date.After(end) {
		t.Fatalf("walk from %s: %d bars, first %v", start, len(first), first[0].Date)
	}
	off := len(fresh) - len(first)
	for i, b := range first {
		if b != fresh[off+i] {
			t.Fatalf("bar %d from the cache %+v, generated %+v", i, b, fresh[off+i])
		}
	}
	first[0].Close = -1
	again := demoWalk("CACHEDSYM", start, end)
	if again[0] != fresh[off] {
		t.Fatalf("a caller's change reached the cache: %+v", again[0])
	}
	if older := demoWalk("CACHEDSYM", start.AddDate(-1, 0, 0), end); len(older) <= len(again) || older[len(older)-len(again)] != again[0] {
		t.Fatalf("a longer lookback: %d bars, not ending in the shorter's %d", len(older), len(again))
	}
}
