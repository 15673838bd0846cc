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

// PaymentKeyPrefixes start the keys of payment, refund and welcome entries,
// reserved like ReservedKeyPrefix so `ledger check` can tell them apart.
var PaymentKeyPrefixes = []string{"pay:", "refund:", "welcome:"}

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
	case hasAnyPrefix(key, PaymentKeyPrefixes):
		return fmt.Errorf("%w: the prefixes %q are reserved for payments", ErrBadKey, PaymentKeyPrefixes)
	case strings.IndexFunc(key, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: control characters", ErrBadKey)
	}
	return nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
