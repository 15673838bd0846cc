// Package scheduler runs recurring research and scans made from chat: cron
// specs with time zones, a quote before a schedule exists, and a claimer that
// fires each due time exactly once across instances.
package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ErrBadSpec is returned for a spec, zone or interval a user cannot have.
var ErrBadSpec = errors.New("bad schedule")

// Spec is a parsed schedule: when it fires, in which zone.
type Spec struct {
	Text  string // as the user wrote it (cron or descriptor)
	Zone  *time.Location
	sched cron.Schedule
}

// ParseSpec parses a 5-field cron spec or a descriptor (@daily, @every 2h,
// ...) in the named IANA zone. It never panics, whatever the input.
func ParseSpec(text, zone string) (sp Spec, err error) {
	text = strings.TrimSpace(text)
	if text == "" || len(text) > 100 || strings.ContainsAny(text, "\n\r\t") {
		return sp, fmt.Errorf("%w: give a cron spec like \"30 16 * * 1-5\" or @daily", ErrBadSpec)
	}
	if strings.Contains(strings.ToUpper(text), "TZ=") {
		return sp, fmt.Errorf("%w: give the zone as tz:Area/City, not inside the spec", ErrBadSpec)
	}
	if zone == "" {
		zone = "UTC"
	}
	if strings.ContainsAny(zone, " \t\n") || len(zone) > 64 {
		return sp, fmt.Errorf("%w: unknown time zone %q", ErrBadSpec, zone)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil || zone == "Local" {
		return sp, fmt.Errorf("%w: unknown time zone %q (use an IANA name like America/New_York)", ErrBadSpec, zone)
	}
	// robfig/cron panics on some malformed input (a CRON_TZ prefix without
	// its space, for one): the prefix is built here, and the parser is fenced.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: cannot parse %q", ErrBadSpec, text)
		}
	}()
	s, perr := cron.ParseStandard("CRON_TZ=" + zone + " " + text)
	if perr != nil {
		return sp, fmt.Errorf("%w: %q: %v", ErrBadSpec, text, perr)
	}
	return Spec{Text: text, Zone: loc, sched: s}, nil
}

// Next returns the first fire time after t, in UTC.
//
// Local wall-clock time across DST changes: a time that does not exist on the
// spring-forward day (02:30 in New York, 02:15 on Lord Howe Island) does not
// fire that day; a time that happens twice on the fall-back day (01:30 in New
// York, 01:45 on Lord Howe Island, whose clocks move by 30 minutes) fires
// once, at its first occurrence. The quote's next five times show both.
func (s Spec) Next(t time.Time) time.Time {
	for {
		n := s.sched.Next(t)
		if n.IsZero() {
			return n
		}
		// Intervals (@every) are about elapsed time, not wall clocks, and are
		// left alone.
		ss, wallClock := s.sched.(*cron.SpecSchedule)
		if !wallClock {
			return n.UTC()
		}
		switch {
		case !matches(ss, n.In(s.Zone)):
			// robfig/cron re-checks the hour only when the minute wraps to
			// 0: across a 30-minute shift (01:59 -> 02:30) it can return a
			// time the spec does not name. Search on from there.
		case s.repeats(n):
		default:
			return n.UTC()
		}
		t = n
	}
}

// repeats reports whether n is the second occurrence of a wall-clock time
// (the fall-back day) whose first occurrence was a fire time too. The repeat
// lasts as long as the zone's offset moved back, 1 h in New York and 30 min
// on Lord Howe Island.
func (s Spec) repeats(n time.Time) bool {
	local := n.In(s.Zone)
	start, _ := local.ZoneBounds()
	if start.IsZero() {
		return false // the zone never changed its offset
	}
	_, after := local.Zone()
	_, before := start.Add(-time.Nanosecond).In(s.Zone).Zone()
	shift := time.Duration(before-after) * time.Second
	if shift <= 0 || n.Sub(start) >= shift {
		return false // clocks moved forward, or n is past the repeated stretch
	}
	first := n.Add(-shift)
	return sameWallClock(first, n, s.Zone) && s.sched.Next(first.Add(-time.Second)).Equal(first)
}

// matches reports whether local time t is one a cron spec names, with the
// day rule robfig/cron uses (day of month and day of week are ANDed when
// either is *, else ORed).
func matches(ss *cron.SpecSchedule, t time.Time) bool {
	const star = 1 << 63
	bit := func(set uint64, v int) bool { return set&(1<<uint(v)) != 0 }
	dom, dow := bit(ss.Dom, t.Day()), bit(ss.Dow, int(t.Weekday()))
	day := dom || dow
	if ss.Dom&star != 0 || ss.Dow&star != 0 {
		day = dom && dow
	}
	return day && bit(ss.Month, int(t.Month())) && bit(ss.Hour, t.Hour()) && bit(ss.Minute, t.Minute()) && bit(ss.Second, t.Second())
}

// sameWallClock reports whether two instants show the same local time.
func sameWallClock(a, b time.Time, loc *time.Location) bool {
	return a.In(loc).Format("2006-01-02 15:04") == b.In(loc).Format("2006-01-02 15:04")
}

// NextN lists the next n fire times after t.
func (s Spec) NextN(t time.Time, n int) []time.Time {
	var out []time.Time
	for len(out) < n {
		t = s.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// perMonth counts the fire times in the 30 days after t. Past 50,000 times
// (a minimum interval configured under a minute) it extrapolates.
func (s Spec) perMonth(t time.Time) int {
	const month, most = 30 * 24 * time.Hour, 50_000
	n, x := 0, t
	for n < most {
		next := s.Next(x)
		if next.IsZero() || next.Sub(t) > month {
			return n
		}
		n, x = n+1, next
	}
	return int(float64(n) * float64(month) / float64(x.Sub(t)))
}

// MinGap is the shortest gap between fires over the next year (sampled),
// for refusing schedules that fire too often.
func (s Spec) MinGap(from time.Time) time.Duration {
	times := s.NextN(from, 400)
	gap := time.Duration(1<<62 - 1)
	for i := 1; i < len(times); i++ {
		gap = min(gap, times[i].Sub(times[i-1]))
	}
	return gap
}
