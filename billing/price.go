package billing

import (
	"errors"
	"fmt"
	"math/bits"
)

// ErrOverflow reports money arithmetic whose result does not fit: token
// counts or amounts no real run reaches, so the inputs are wrong (a provider
// reporting 3e18 tokens, say). Callers treat it as bad input, never panic.
var ErrOverflow = errors.New("money overflow")

// MaxMoney is the largest Money; Cost saturates at it.
const MaxMoney Money = 1<<63 - 1

// Price is what a model route charges per one million input and output tokens.
type Price struct {
	InputPerM  Money
	OutputPerM Money
}

// Cost returns the price of tokensIn input and tokensOut output tokens,
// rounded up to the micro-dollar once, on the exact total. Negative token
// counts are treated as zero. It never panics: a total that does not fit in
// a Money saturates at MaxMoney (use CostChecked to see the overflow).
func (p Price) Cost(tokensIn, tokensOut int64) Money {
	m, err := p.CostChecked(tokensIn, tokensOut)
	if err != nil {
		return MaxMoney
	}
	return m
}

// CostChecked is Cost that returns ErrOverflow instead of saturating.
func (p Price) CostChecked(tokensIn, tokensOut int64) (Money, error) {
	hi1, lo1 := bits.Mul64(uint64(max(tokensIn, 0)), uint64(max(p.InputPerM, 0)))
	hi2, lo2 := bits.Mul64(uint64(max(tokensOut, 0)), uint64(max(p.OutputPerM, 0)))
	lo, carry := bits.Add64(lo1, lo2, 0)
	hi, carry2 := bits.Add64(hi1, hi2, carry)
	const perM = 1_000_000
	if carry2 != 0 || hi >= perM {
		return 0, fmt.Errorf("%w: %d in / %d out tokens at %s", ErrOverflow, tokensIn, tokensOut, p)
	}
	q, r := bits.Div64(hi, lo, perM)
	if r > 0 {
		q++
	}
	if q > uint64(MaxMoney) {
		return 0, fmt.Errorf("%w: %d in / %d out tokens at %s", ErrOverflow, tokensIn, tokensOut, p)
	}
	return Money(q), nil
}

// Add returns a+b, or ErrOverflow when the sum does not fit.
func Add(a, b Money) (Money, error) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, fmt.Errorf("%w: %d + %d", ErrOverflow, a, b)
	}
	return s, nil
}

// Sub returns a-b, or ErrOverflow when the difference does not fit.
func Sub(a, b Money) (Money, error) {
	d := a - b
	if (b > 0 && d > a) || (b < 0 && d < a) {
		return 0, fmt.Errorf("%w: %d - %d", ErrOverflow, a, b)
	}
	return d, nil
}

// Sum adds amounts, or returns ErrOverflow.
func Sum(ms ...Money) (Money, error) {
	var total Money
	for _, m := range ms {
		var err error
		if total, err = Add(total, m); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// SaturatingAdd returns a+b clamped to [-MaxMoney-1, MaxMoney]: for figures
// shown to people (a running cost), where an error has nowhere to go and a
// clamp is the honest "more than anything".
func SaturatingAdd(a, b Money) Money {
	s, err := Add(a, b)
	if err == nil {
		return s
	}
	if b > 0 {
		return MaxMoney
	}
	return -MaxMoney - 1
}

func (p Price) String() string {
	return fmt.Sprintf("%s in / %s out per 1M tokens", p.InputPerM, p.OutputPerM)
}
