package billing

import (
	"fmt"
	"strings"
	"unicode"
)

// ReservedKeyPrefix starts the keys the store writes on its own (the hold
// sweeper's expiry entries); callers may not use it, so no caller's key can
// ever collide with them.
const ReservedKeyPrefix = "expire:"

// MaxKeyLen bounds an idempotency key.
const MaxKeyLen = 200

// CheckKey validates a caller's idempotency key.
func CheckKey(key string) error {
	switch {
	case key == "":
		return ErrMissingKey
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrBadKey, MaxKeyLen)
	case strings.HasPrefix(key, ReservedKeyPrefix):
		return fmt.Errorf("%w: the prefix %q is reserved", ErrBadKey, ReservedKeyPrefix)
	case strings.IndexFunc(key, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: control characters", ErrBadKey)
	}
	return nil
}
