package billing

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckKey(t *testing.T) {
	for key, want := range map[string]error{
		"run:abc:settle":                 nil,
		"pay-1":                          nil,
		strings.Repeat("k", MaxKeyLen):   nil,
		"":                               ErrMissingKey,
		"expire:12":                      ErrBadKey, // the sweeper's own entries
		"a\nb":                           ErrBadKey,
		strings.Repeat("k", MaxKeyLen+1): ErrBadKey,
	} {
		if err := CheckKey(key); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("CheckKey(%.20q) = %v, want %v", key, err, want)
		}
	}
	// Every request type refuses the reserved prefix before the database.
	for name, err := range map[string]error{
		"post":    PostRequest{AccountID: 1, Bucket: BucketCredit, Kind: KindTopup, Amount: 1, Key: "expire:1"}.Validate(),
		"hold":    HoldRequest{AccountID: 1, Bucket: BucketCredit, Amount: 1, TTL: 1, Key: "expire:1"}.Validate(),
		"capture": CaptureRequest{HoldID: 1, Amount: 1, Key: "expire:1"}.Validate(),
		"release": ReleaseRequest{HoldID: 1, Key: "expire:1"}.Validate(),
	} {
		if !errors.Is(err, ErrBadKey) {
			t.Errorf("%s with a reserved key = %v", name, err)
		}
	}
}
