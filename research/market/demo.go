package market

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"
)

// Demo makes up plausible daily history so that forgebot can be tried without network or data files. Its
// series are marked Synthetic and must be shown as such.
//
// Each symbol gets its own deterministic walk, seeded from the symbol: a log price that follows a gentle
// trend with mean-reverting noise (so decades of history stay in a believable range), with open, high, low
// and volume drawn around each close. The walk always starts on demoEpoch and runs forward to the requested
// day, so a given symbol has the same bar on a given date whatever lookback or "today" asked for it. Stocks
// trade on weekdays; crypto pairs ("BTC-USD") every day.
type Demo struct {
	now func() time.Time
}

var _ Provider = (*Demo)(nil)

// NewDemo returns a demo provider whose series end on now()'s date (time.Now when now is nil).
func NewDemo(now func() time.Time) *Demo {
	if now == nil {
		now = time.Now
	}
	return &Demo{now: now}
}

// demoEpoch is the first day of every demo walk; no demo series reaches further back.
var demoEpoch = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)

// Name implements Provider.
func (d *Demo) Name() string { return "demo" }

// Synthetic implements Provider: the data is made up.
func (d *Demo) Synthetic() bool { return true }

// History implements Provider. The series ends on today's date (or the last weekday before it) and starts on
// the first trading day on or after today minus lookback, but never before 1990-01-01.
func (d *Demo) History(ctx context.Context, symbol string, lookback time.Duration) (Series, error) {
	sym, err := NormalizeSymbol(symbol)
	if err != nil {
		return Series{}, fmt.Errorf("demo: %w", err)
	}
	if lookback <= 0 {
		return Series{}, fmt.Errorf("demo: %s: lookback must be positive, got %s", sym, lookback)
	}
	if err := ctx.Err(); err != nil {
		return Series{}, fmt.Errorf("demo: %s: %w", sym, context.Cause(ctx))
	}
	today := day(d.now().UTC())
	start := day(today.Add(-lookback))
	bars := demoWalk(sym, start, today)
	if len(bars) == 0 {
		return Series{}, fmt.Errorf("demo: %s: %w: demo data starts on %s", sym, ErrNoData, demoEpoch.Format(time.DateOnly))
	}
	return Series{Symbol: sym, Bars: bars, Source: "demo", Synthetic: true, Class: ClassOf(sym, ""), TimeZone: "UTC"}, nil
}

// demoWalk returns the walk's bars from start to end, a copy the caller may keep and change.
func demoWalk(sym string, start, end time.Time) []Bar {
	all := cachedWalk(sym, end)
	i := sort.Search(len(all), func(i int) bool { return !all[i].Date.Before(start) })
	return append([]Bar(nil), all[i:]...)
}

// walks keeps the most recent full walks. A walk depends only on its symbol and last day, and generating
// one from 1990 was most of a demo fetch's CPU, paid again by every quote and run of the same symbol on the
// same day (a scan of ten symbols fetches each at the quote and at the run).
var walks struct {
	sync.Mutex
	m     map[walkKey][]Bar
	order []walkKey // oldest first, for eviction
}

type walkKey struct {
	sym string
	end time.Time
}

// walkCacheSize bounds the cache: a walk to 2026 is about 9,500 bars (half a megabyte).
const walkCacheSize = 32

func cachedWalk(sym string, end time.Time) []Bar {
	k := walkKey{sym, end}
	walks.Lock()
	all, ok := walks.m[k]
	walks.Unlock()
	if ok {
		return all
	}
	all = generateWalk(sym, end) // outside the lock: two callers of one new walk may both generate it
	walks.Lock()
	defer walks.Unlock()
	if _, ok := walks.m[k]; !ok {
		if walks.m == nil {
			walks.m = map[walkKey][]Bar{}
		}
		if len(walks.order) >= walkCacheSize {
			delete(walks.m, walks.order[0])
			walks.order = walks.order[1:]
		}
		walks.m[k] = all
		walks.order = append(walks.order, k)
	}
	return all
}

// generateWalk generates the walk from demoEpoch to end. Every day draws the same random numbers in the
// same order whatever the range asked for, which is what makes a date's bar stable.
func generateWalk(sym string, end time.Time) []Bar {
	h := fnv.New64a()
	h.Write([]byte(sym))
	seed := h.Sum64()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	// The walk's character, drawn once per symbol.
	everyDay := isCryptoPair(sym)
	price0 := 10 + 390*r.Float64()               // starting price
	drift := -0.02 + 0.10*r.Float64()            // annual trend of the log price
	sigma := 0.15 + 0.35*r.Float64()             // annual volatility
	baseVol := 1e5 * math.Pow(10, 2*r.Float64()) // typical shares traded a day
	// Keep the kinds of instrument recognisable: currency pairs sit near 1 and move little, crypto moves a lot.
	switch {
	case strings.HasSuffix(sym, "=X"):
		price0, sigma = 0.5+1.5*r.Float64(), 0.05+0.07*r.Float64()
	case everyDay:
		sigma = 0.5 + 0.4*r.Float64()
	}

	const theta = 0.3 // mean reversion towards the trend, per year
	dt := 1.0 / TradingDaysPerYear
	sigmaDay := sigma * math.Sqrt(dt)
	trend, dev := math.Log(price0), 0.0
	prev := roundPrice(price0)
	var bars []Bar
	for t := demoEpoch; !t.After(end); t = t.AddDate(0, 0, 1) {
		if !everyDay && (t.Weekday() == time.Saturday || t.Weekday() == time.Sunday) {
			continue
		}
		z, zGap, zHigh, zLow, zVol := r.NormFloat64(), r.NormFloat64(), r.NormFloat64(), r.NormFloat64(), r.NormFloat64()
		trend += drift * dt
		dev += -theta*dev*dt + sigmaDay*z
		closeP := roundPrice(math.Exp(trend + dev))
		open := roundPrice(prev * math.Exp(0.25*sigmaDay*zGap))
		high := roundPrice(math.Max(open, closeP) * math.Exp(0.4*sigmaDay*math.Abs(zHigh)))
		low := roundPrice(math.Min(open, closeP) * math.Exp(-0.4*sigmaDay*math.Abs(zLow)))
		// Rounding can reorder prices a hair apart; the bar must stay consistent.
		high = math.Max(high, math.Max(open, closeP))
		low = math.Max(math.Min(low, math.Min(open, closeP)), 0.0001)
		// Busier days move more, as in real markets.
		move := math.Abs(math.Log(closeP/prev)) / sigmaDay
		volume := math.Max(1, math.Round(baseVol*math.Exp(0.3*zVol)*(1+0.5*move)))
		prev = closeP
		bars = append(bars, Bar{Date: t, Open: open, High: high, Low: low, Close: closeP, Volume: volume})
	}
	return bars
}

// roundPrice rounds to cents, or to four decimals below one unit, as quotes are usually given.
func roundPrice(p float64) float64 {
	if p >= 1 {
		return math.Round(p*100) / 100
	}
	return math.Max(math.Round(p*1e4)/1e4, 0.0001)
}

// isCryptoPair tells "BTC-USD" (trades every day) from a share class such as "BRK-B".
func isCryptoPair(sym string) bool {
	i := strings.LastIndexByte(sym, '-')
	return i > 0 && len(sym)-i-1 >= 3
}
