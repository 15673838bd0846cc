package billing

import (
	"errors"
	"fmt"
	"time"
)

// Limits caps what an account may spend per UTC day and per UTC calendar
// month; zero means no limit. A hold counts at its full amount while open and
// at what it captured once settled, so concurrent runs cannot pass a limit
// together: the check is made in the transaction that places the hold.
type Limits struct {
	Daily   Money
	Monthly Money
}

// None reports whether no limit applies.
func (l Limits) None() bool { return l.Daily == 0 && l.Monthly == 0 }

// Spend is what an account has spent (holds included) in the current day and
// month, beside its limits.
type Spend struct {
	Today  Money
	Month  Money
	Limits Limits
	Own    bool // the account set its limits itself (else the operator's defaults apply)
}

// ErrSpendLimit matches every *LimitError.
var ErrSpendLimit = errors.New("spend limit reached")

// LimitError says which limit a hold would pass.
type LimitError struct {
	Period string // "daily" or "monthly"
	Limit  Money
	Spent  Money
	Amount Money
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s limit %s: %s spent, a %s hold would pass it", e.Period, e.Limit, e.Spent, e.Amount)
}

// Is makes errors.Is(err, ErrSpendLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrSpendLimit }

// DayStart and MonthStart bound the periods limits count over (UTC).
func DayStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// MonthStart is the first instant of t's UTC month.
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// LimitPolicy is the operator's: defaults for accounts that set none, and the
// most a user may set (zero: no maximum). "/limit off" falls back to the
// maximum when there is one.
type LimitPolicy struct {
	Defaults Limits
	Max      Limits
}

// Resolve applies a user's request for one period ("daily" or "monthly") to
// their current limits. amount < 0 means "off".
func (p LimitPolicy) Resolve(cur Limits, period string, amount Money) (Limits, error) {
	max := map[string]Money{"daily": p.Max.Daily, "monthly": p.Max.Monthly}[period]
	if amount < 0 {
		amount = max
	} else if amount == 0 {
		return cur, fmt.Errorf("%w: a limit must be above $0.00 (or use /limit off)", ErrInvalidAmount)
	} else if max > 0 && amount > max {
		return cur, fmt.Errorf("%w: the most this bot allows is %s %s", ErrInvalidAmount, max, period)
	}
	switch period {
	case "daily":
		cur.Daily = amount
	case "monthly":
		cur.Monthly = amount
	default:
		return cur, fmt.Errorf("unknown limit period %q: use daily or monthly", period)
	}
	return cur, nil
}
