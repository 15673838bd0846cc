package billing

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Money is an amount of US dollars counted in micro-dollars (1 USD = 1,000,000).
// Every amount in forgebot is a Money; no float ever holds money.
type Money int64

// Micro is the number of Money units in one dollar.
const Micro Money = 1_000_000

// ErrInvalidAmount reports an amount that cannot be parsed or is not allowed where it was given.
var ErrInvalidAmount = errors.New("invalid amount")

// ParseMoney reads a dollar amount such as "1.25", "$0.000350", "0.5" or "-2".
// It accepts at most six decimal places (one micro-dollar) and never rounds:
// "0.0000001" is an error, not zero.
func ParseMoney(s string) (Money, error) {
	in := strings.TrimSpace(s)
	neg := false
	if strings.HasPrefix(in, "-") {
		neg, in = true, in[1:]
	}
	in = strings.TrimPrefix(in, "$")
	whole, frac, hasDot := strings.Cut(in, ".")
	if whole == "" || !allDigits(whole) || (hasDot && (frac == "" || !allDigits(frac))) {
		return 0, fmt.Errorf("%w: %q is not a dollar amount like 1.25", ErrInvalidAmount, s)
	}
	if len(frac) > 6 {
		return 0, fmt.Errorf("%w: %q has more than 6 decimal places", ErrInvalidAmount, s)
	}
	dollars, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || dollars > int64(maxDollars) {
		return 0, fmt.Errorf("%w: %q is too large", ErrInvalidAmount, s)
	}
	micros := int64(0)
	if frac != "" {
		micros, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	m := Money(dollars)*Micro + Money(micros)
	if neg {
		m = -m
	}
	return m, nil
}

// maxDollars bounds parsed amounts far below the int64 limit, so sums of many
// amounts cannot overflow.
const maxDollars = 1_000_000_000

// MaxAmount is the largest amount one ledger operation may move (a billion
// dollars): with it, sums of balances stay far from the int64 limit, and a
// request beyond it is refused as ErrInvalidAmount before any SQL runs.
const MaxAmount Money = maxDollars * Micro

// checkAmount refuses an amount whose size is beyond MaxAmount.
func checkAmount(m Money) error {
	if m > MaxAmount || m < -MaxAmount {
		return fmt.Errorf("%w: %d micro-dollars is beyond the largest amount (%s)", ErrInvalidAmount, m, MaxAmount)
	}
	return nil
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Decimals is how many decimals String prints for m: 2 or 6.
func (m Money) Decimals() int {
	u := uint64(m)
	if m < 0 {
		u = uint64(-m)
	}
	if u%uint64(Micro)%10_000 == 0 {
		return 2
	}
	return 6
}

// Alike prints amounts shown together (a range, "X of Y") with the same
// number of decimals, the most any of them needs: "$0.001090 to $0.001909",
// not "$0.00109 to $0.001909".
func Alike(ms ...Money) []string {
	d := 2
	for _, m := range ms {
		d = max(d, m.Decimals())
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		s := m.String()
		if pad := d - m.Decimals(); pad > 0 {
			s += strings.Repeat("0", pad)
		}
		out[i] = s
	}
	return out
}

// Fine prints amounts with all six decimals, for a figure that grows while
// it is watched (a run's cost so far), so it keeps one width from $0.000000.
func Fine(ms ...Money) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		s := m.String()
		if pad := 6 - m.Decimals(); pad > 0 {
			s += strings.Repeat("0", pad)
		}
		out[i] = s
	}
	return out
}

// String formats m as dollars: whole cents with two decimals ($1.25,
// -$0.10), anything finer with all six ($0.000350, $4.999240), so amounts
// never show a varying number of decimals ($0.00109 next to $0.001909).
func (m Money) String() string {
	sign := ""
	u := uint64(m)
	if m < 0 {
		sign, u = "-", uint64(-m)
	}
	whole, frac := u/uint64(Micro), u%uint64(Micro)
	digits := fmt.Sprintf("%06d", frac)
	return fmt.Sprintf("%s$%d.%s", sign, whole, digits[:m.Decimals()])
}

// Micros returns m as a plain count of micro-dollars, for JSON and SQL.
func (m Money) Micros() int64 { return int64(m) }
