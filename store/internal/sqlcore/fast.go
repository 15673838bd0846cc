package sqlcore

import (
	"context"
	"errors"

	"github.com/tokensforge/forgebot/billing"
)

// fast runs a single-statement fast path (see Dialect.FastPlaceHold). ok is
// false when the statement found the case unusual (no row, or a used key):
// the caller then runs the general transaction, which reports replays,
// conflicts and refusals exactly. A single statement is atomic on its own.
//
// FastPlaceHold's arguments: $1 account, $2 bucket, $3 amount, $4 now,
// $5 reference, $6 key, $7 expires at, $8 fingerprint, $9 actor, $10 entry key.
// FastCapture's: $1 hold, $2 amount, $3 now, $4 key, $5 actor, $6 fingerprint.
func (c *Core) fast(ctx context.Context, query string, args ...any) (h billing.Hold, ok bool, err error) {
	h, err = scanHold(c.DB.QueryRow(ctx, query, args...))
	switch {
	case err == nil:
		return h, true, nil
	case errors.Is(err, billing.ErrUnknownHold), c.Dialect.IsUniqueViolation(err):
		return billing.Hold{}, false, nil
	}
	return billing.Hold{}, false, err
}
