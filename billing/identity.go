package billing

import (
	"fmt"
	"regexp"
	"time"
)

// AccountID identifies an account: one wallet with two buckets, reachable from
// one or more identities.
type AccountID int64

// Identity is a user on one platform, written platform:external_id
// (telegram:123, discord:456, cli:alice).
type Identity struct {
	Platform   string
	ExternalID string
}

var (
	platformRE   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	externalIDRE = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,128}$`)
)

// ParseIdentity reads "platform:external_id".
func ParseIdentity(s string) (Identity, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			id := Identity{Platform: s[:i], ExternalID: s[i+1:]}
			if err := id.Validate(); err != nil {
				return Identity{}, err
			}
			return id, nil
		}
	}
	return Identity{}, fmt.Errorf("user %q: want platform:id, like telegram:42", s)
}

// Validate reports whether the identity is well formed.
func (id Identity) Validate() error {
	if !platformRE.MatchString(id.Platform) {
		return fmt.Errorf("user %q: platform must be lowercase letters, like telegram", id.String())
	}
	if !externalIDRE.MatchString(id.ExternalID) {
		return fmt.Errorf("user %q: id must be 1-128 letters, digits or _.@-", id.String())
	}
	return nil
}

func (id Identity) String() string { return id.Platform + ":" + id.ExternalID }

// Account is a wallet owner and the identities that reach it.
type Account struct {
	ID         AccountID
	Identities []Identity
	CreatedAt  time.Time
}
