package telegram

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/go-telegram/bot"

	"github.com/tokensforge/forgebot/bots"
)

// ErrBadToken is returned by Start when the Bot API refuses the token.
var ErrBadToken = errors.New("telegram: the Bot API refused the bot token")

// APIError is a failed Bot API call. It never carries the token: the library
// puts it in request URLs, so its errors are rewritten, not wrapped.
type APIError struct {
	Method      string
	Code        int    // 400, 401, 403, 404, 409; 0 for a network or decoding failure
	Description string // Telegram's description or the transport error, token redacted
	kind        error  // a go-telegram/bot sentinel or a context error, for errors.Is
}

func (e *APIError) Error() string { return "telegram " + e.Method + ": " + e.Description }

// Unwrap returns the go-telegram/bot sentinel (bot.ErrorBadRequest, ...) or
// the context error behind the failure.
func (e *APIError) Unwrap() error { return e.kind }

var sentinels = []struct {
	code int
	err  error
}{
	{400, bot.ErrorBadRequest}, {401, bot.ErrorUnauthorized}, {403, bot.ErrorForbidden},
	{404, bot.ErrorNotFound}, {409, bot.ErrorConflict},
}

// redactor removes the tokens (the bot's, a payment provider's) from text.
type redactor struct{ r *strings.Replacer }

func newRedactor(tokens ...string) redactor {
	var pairs []string
	for _, token := range tokens {
		if token == "" {
			continue
		}
		pairs = append(pairs, token, "<token>")
		if esc := url.PathEscape(token); esc != token {
			pairs = append(pairs, esc, "<token>")
		}
	}
	return redactor{strings.NewReplacer(pairs...)}
}

func (r redactor) String(s string) string { return r.r.Replace(s) }

// classify turns a library error into what the adapter and the outbox act
// on: a *bots.RetryAfterError for a 429, an *APIError otherwise.
func (r redactor) classify(method string, err error) error {
	if err == nil {
		return nil
	}
	var tm *bot.TooManyRequestsError // bot.IsTooManyRequestsError is a bare type assertion
	if errors.As(err, &tm) {
		return &bots.RetryAfterError{Wait: time.Duration(max(tm.RetryAfter, 1)) * time.Second}
	}
	var ra *bots.RetryAfterError
	if errors.As(err, &ra) {
		return ra
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	e := &APIError{Method: method, Description: r.String(err.Error())}
	var me *bot.MigrateError
	if errors.As(err, &me) {
		e.Code, e.kind = 400, bot.ErrorBadRequest
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			e.Code, e.kind = s.code, s.err
		}
	}
	if e.kind == nil {
		for _, c := range []error{context.Canceled, context.DeadlineExceeded} {
			if errors.Is(err, c) {
				e.kind = c
			}
		}
	}
	return e
}

func describes(err error, code int, parts ...string) bool {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != code {
		return false
	}
	d := strings.ToLower(ae.Description)
	for _, p := range parts {
		if strings.Contains(d, strings.ToLower(p)) {
			return true
		}
	}
	return false
}

// notModified: the edit changes nothing, which is what was wanted.
func notModified(err error) bool { return describes(err, 400, "message is not modified") }

// gone: the message to edit no longer exists or can no longer be edited.
func gone(err error) bool {
	return describes(err, 400, "message to edit not found", "message can't be edited", "message_id_invalid", "message not found")
}

// badLink: Telegram refused a link button's URL.
func badLink(err error) bool {
	return describes(err, 400, "button_url_invalid", "button url", "url is invalid", "wrong http url", "unsupported url protocol")
}

func forbidden(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == 403
}

// permanent errors will fail again the same way: no point retrying.
func permanent(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code >= 400 && ae.Code < 500
}
