package billing

import (
	"fmt"
	"math/bits"
)

// Price is what a model route charges per one million input and output tokens.
type Price struct {
	InputPerM  Money
	OutputPerM Money
}

// Cost returns the price of tokensIn input and tokensOut output tokens,
// rounded up to the micro-dollar once, on the exact total.
// Negative token counts are treated as zero.
func (p Price) Cost(tokensIn, tokensOut int64) Money {
	hi1, lo1 := bits.Mul64(uint64(max(tokensIn, 0)), uint64(max(p.InputPerM, 0)))
	hi2, lo2 := bits.Mul64(uint64(max(tokensOut, 0)), uint64(max(p.OutputPerM, 0)))
	lo, carry := bits.Add64(lo1, lo2, 0)
	hi := hi1 + hi2 + carry
	const perM = 1_000_000
	if hi >= perM {
		// The quotient would not fit in 64 bits: no real run gets here.
		panic(fmt.Sprintf("billing: cost overflow for %d in / %d out tokens", tokensIn, tokensOut))
	}
	q, r := bits.Div64(hi, lo, perM)
	if r > 0 {
		q++
	}
	if q > 1<<63-1 {
		panic("billing: cost overflow")
	}
	return Money(q)
}

func (p Price) String() string {
	return fmt.Sprintf("%s in / %s out per 1M tokens", p.InputPerM, p.OutputPerM)
}
