package market

import (
	"fmt"
	"math"
	"time"
)

// Warning is a data problem found in a series, said in the report next to the figures it spoils.
type Warning struct {
	// Kind is "split" (a jump whose size is a usual split ratio) or "gap" (any other suspect jump).
	Kind string    `json:"kind"`
	Date time.Time `json:"date"`
	Text string    `json:"text"`
}

// splitRatios are the ratios splits and reverse splits usually come in.
var splitRatios = []float64{1.5, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20, 1 / 1.5, 0.5, 1.0 / 3, 0.25, 0.2, 0.1, 0.05}

// CheckJumps finds one-day close-to-close moves beyond the asset class's bound (25 % for equities, 40 % for
// crypto, 10 % for FX). A move whose size is a usual split ratio (a 4:1 split quarters the price) is called
// an unadjusted split when the provider reported no split on that day, and a split the prices were not
// adjusted for when it did; any other is a gap to check. Either way the figures that span it (SMAs, returns,
// drawdown, 52-week range) mix two price bases, so the caller keeps them out of signals.
func CheckJumps(s Series) []Warning {
	var out []Warning
	bound := s.AssetClass().jumpBound()
	for i := 1; i < len(s.Bars); i++ {
		prev, cur := s.Bars[i-1].Close, s.Bars[i].Close
		if prev <= 0 || cur <= 0 {
			continue
		}
		move := cur/prev - 1
		if math.Abs(move) <= bound {
			continue
		}
		date := s.Bars[i].Date
		ratio := prev / cur // 4 for a 4:1 split
		w := Warning{Kind: "gap", Date: date}
		what := fmt.Sprintf("one-day move of %+.1f%% on %s (close %s to %s)", move*100, date.Format(time.DateOnly),
			FormatPrice(prev, s.Precision()), FormatPrice(cur, s.Precision()))
		if r, ok := nearRatio(ratio); ok {
			w.Kind = "split"
			event := "no split is reported for that day"
			for _, a := range s.Actions {
				if a.Kind == "split" && a.Date.Equal(date) {
					event = fmt.Sprintf("a %s split is reported for that day but the prices are not adjusted for it", splitText(a.Numerator, a.Denominator))
				}
			}
			w.Text = fmt.Sprintf("%s looks like an unadjusted %s split (%s): figures spanning it are unreliable and raise no signal", what, ratioText(r), event)
		} else {
			w.Text = fmt.Sprintf("%s is beyond the %.0f%% bound for %s: check the data; figures spanning it raise no signal", what, bound*100, s.AssetClass())
		}
		out = append(out, w)
	}
	return out
}

// nearRatio returns the usual split ratio within 3 % of r.
func nearRatio(r float64) (float64, bool) {
	for _, x := range splitRatios {
		if math.Abs(r/x-1) < 0.03 {
			return x, true
		}
	}
	return 0, false
}

// ratioText writes 4 as "4:1", 1.5 as "3:2" and 0.25 as "1:4" (a reverse split).
func ratioText(r float64) string {
	if r >= 1 {
		if r == math.Trunc(r) {
			return fmt.Sprintf("%.0f:1", r)
		}
		return fmt.Sprintf("%.0f:2", r*2)
	}
	if inv := 1 / r; math.Abs(inv-math.Round(inv)) < 1e-9 {
		return fmt.Sprintf("1:%.0f", math.Round(inv))
	}
	return fmt.Sprintf("2:%.0f", 2/r)
}

func splitText(num, den float64) string {
	return fmt.Sprintf("%g:%g", num, den)
}

// FormatPrice prints a price with the given decimals ("1.1171" for EURUSD at 4).
func FormatPrice(p float64, decimals int) string {
	return fmt.Sprintf("%.*f", max(decimals, 0), p)
}

// Staleness says how old s's last bar is at now when that is beyond the class's StaleAfter, and "" when the
// series is fresh. The age counts from the end of the last bar's day.
func Staleness(ind Indicators, now time.Time) string {
	if ind.AsOf.IsZero() {
		return ""
	}
	end := ind.AsOf.Add(24 * time.Hour)
	age := now.Sub(end)
	if age <= ind.Class.StaleAfter() {
		return ""
	}
	days := int(age.Hours()/24) + 1
	return fmt.Sprintf("stale: the last bar is %s, %d days before %s (more than %d days old for %s); these figures describe then, not now",
		ind.AsOf.Format(time.DateOnly), days, now.UTC().Format(time.DateOnly), int(ind.Class.StaleAfter().Hours()/24), ind.Class)
}
