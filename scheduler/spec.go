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
// spring-forward day (02:30 in New York) does not fire that day; a time that
// happens twice on the fall-back day (01:30) fires once, at its first
// occurrence. The quote's next five times show both.
func (s Spec) Next(t time.Time) time.Time {
	n := s.sched.Next(t)
	if n.IsZero() {
		return n
	}
	// The second occurrence of a wall-clock time (fall-back day) is skipped
	// when its first occurrence was a fire time too. Intervals (@every) are
	// about elapsed time, not wall clocks, and are left alone.
	if _, wallClock := s.sched.(*cron.SpecSchedule); wallClock {
		first := n.Add(-time.Hour)
		if sameWallClock(first, n, s.Zone) && s.sched.Next(first.Add(-time.Second)).Equal(first) {
			return s.Next(n)
		}
	}
	return n.UTC()
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
