package bots

import (
	"context"
	"time"
)

// RateStore keeps rate budgets every instance shares (store/postgres and
// store/sqlite implement it in the database), so that two instances posting
// to one chat stay together within the platform's limits, as one would.
type RateStore interface {
	// TakeRate checks every rule at now and, when all allow a call, records
	// it in each, atomically; otherwise it records nothing and returns how
	// long until they may (the longest of the rules' waits).
	TakeRate(ctx context.Context, now time.Time, rules []RateRule) (wait time.Duration, ok bool, err error)
	// PruneRates deletes the budgets idle since before: a bucket full
	// again by then (it is the same as no row) and a window with no call
	// since then, with its calls older than before. A budget is one row per
	// chat ever posted to, so without this the table grows with every chat.
	// before must lie further back than the longest window and burst.
	PruneRates(ctx context.Context, before time.Time) (int64, error)
}

// RateRule is one budget a call must fit: a token bucket (Every > 0: a token
// every Every, at most Burst kept; the call needs Need tokens, so it leaves
// Need-1 for others) or a sliding window (Window > 0: at most Max calls in
// any Window, counted Margin later than they were made, since the platform
// counts a call when it arrives).
type RateRule struct {
	Key    string
	Every  time.Duration
	Burst  int
	Need   float64
	Window time.Duration
	Max    int
	Margin time.Duration
}

// BucketWait is how long a token bucket whose theoretical arrival time (the
// time it is full again) is tat makes a call needing need tokens wait at
// now; 0 when it may go.
func BucketWait(tat, now time.Time, every time.Duration, burst int, need float64) time.Duration {
	// Tokens at now: burst, less one per every until tat.
	short := float64(tat.Sub(now))/float64(every) - (float64(burst) - need)
	if short <= 0 {
		return 0
	}
	return max(time.Duration(short*float64(every)), time.Millisecond)
}

// BucketTake is the bucket's theoretical arrival time after one call at now.
func BucketTake(tat, now time.Time, every time.Duration) time.Time {
	if tat.Before(now) {
		tat = now
	}
	return tat.Add(every)
}

// WindowWait is how long a sliding window of max calls per window, whose
// calls so far were at (oldest first), makes a call wait at now.
func WindowWait(at []time.Time, now time.Time, window time.Duration, max int, margin time.Duration) time.Duration {
	n := 0
	for _, t := range at {
		if now.Sub(t) < window+margin {
			n++
		}
	}
	if n < max || max <= 0 && n == 0 {
		return 0
	}
	recent := at[len(at)-n:]
	k := n - max // the call that must leave the window first
	if max <= 0 {
		k = n - 1
	}
	return recent[k].Add(window + margin).Sub(now)
}
