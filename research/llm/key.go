package llm

import (
	"errors"
	"net/url"
	"strings"

	openai "github.com/sashabaranov/go-openai"
)

// MaskKey shows enough of an API key to tell keys apart and nothing more:
// the vendor prefix up to the first '-' (only when it is short, like "sk-")
// and the last four characters. "sk-proj-abcdef...a1b2" becomes "sk-...a1b2".
// An empty key is "(none)"; a key too short to hide at least eight characters
// is "****".
func MaskKey(key string) string {
	const (
		tail      = 4
		minHidden = 8
		maxPrefix = 6 // "sk-", "gsk-", "sk-or-" style prefixes; longer ones would reveal key material
	)
	if key == "" {
		return "(none)"
	}
	prefix := ""
	if i := strings.IndexByte(key, '-'); i >= 0 && i+1 <= maxPrefix {
		prefix = key[:i+1]
	}
	if len(key)-len(prefix)-tail < minHidden {
		if len(key)-tail < minHidden {
			return "****"
		}
		prefix = ""
	}
	return prefix + "..." + key[len(key)-tail:]
}

// redactedError carries an error whose text had an API key replaced by its
// mask. It unwraps to the original so callers can still match
// *openai.APIError and friends, whose key-bearing fields are scrubbed too.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact removes key from err's text and from the fields of the error types
// that can quote a request back (a provider's "Incorrect API key provided:
// ..." message, a proxy's HTML page echoing headers, a URL with a key in its
// query). Any key, however short, is redacted: leaking is worse than a
// mangled message.
func redact(err error, key string) error {
	if err == nil || key == "" {
		return err
	}
	mask := MaskKey(key)
	var apiErr *openai.APIError
	if errors.As(err, &apiErr) {
		apiErr.Message = strings.ReplaceAll(apiErr.Message, key, mask)
		apiErr.HTTPStatus = strings.ReplaceAll(apiErr.HTTPStatus, key, mask)
		if apiErr.Param != nil {
			p := strings.ReplaceAll(*apiErr.Param, key, mask)
			apiErr.Param = &p
		}
		if s, ok := apiErr.Code.(string); ok {
			apiErr.Code = strings.ReplaceAll(s, key, mask)
		}
	}
	var reqErr *openai.RequestError
	if errors.As(err, &reqErr) {
		reqErr.Body = []byte(strings.ReplaceAll(string(reqErr.Body), key, mask))
		reqErr.HTTPStatus = strings.ReplaceAll(reqErr.HTTPStatus, key, mask)
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		urlErr.URL = strings.ReplaceAll(urlErr.URL, key, mask)
	}
	msg := err.Error()
	if !strings.Contains(msg, key) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(msg, key, mask), err: err}
}
