package research

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"

	"github.com/tokensforge/forgebot/research/llm"
	"github.com/tokensforge/forgebot/research/market"
)

// PublicError is a failure as a user may read it: a short class ("the
// model route timed out") and the reference under which the full error was
// logged. A provider's own text, a URL, a host or an address never goes in
// Class: chats and receipt pages show only this.
type PublicError struct {
	Class string
	Ref   string
	Err   error // the full error; for the log and errors.Is, never for a chat
}

// Error is the class and the reference: safe to show.
func (e *PublicError) Error() string { return e.Class + " (ref " + e.Ref + ")" }

// Unwrap returns the full error, so sentinels still match.
func (e *PublicError) Unwrap() error { return e.Err }

// FailureClass says in a few words what kind of failure err is, without any
// of its text: only the error's type, sentinel or HTTP status decides.
// symbol names the market data's symbol, when there is one.
func FailureClass(err error, symbol string) string {
	var f llm.Failure
	switch {
	case err == nil:
		return ""
	case errors.Is(err, market.ErrUnknownSymbol), errors.Is(err, market.ErrInvalidSymbol):
		return "unknown symbol " + symbol
	case errors.Is(err, market.ErrRateLimited):
		return "market data for " + symbol + " is rate limited by the provider"
	case errors.Is(err, market.ErrNoData):
		return "no market data for " + symbol + " in that range"
	case errors.Is(err, market.ErrUnavailable), errors.Is(err, market.ErrMalformed), errors.Is(err, ErrDataUnavailable):
		return "market data for " + symbol + " is unavailable"
	case errors.Is(err, llm.ErrNoRoutes):
		return "no model route is available"
	case errors.As(err, &f):
		return routeClass(f)
	case errors.Is(err, context.DeadlineExceeded):
		return "it timed out"
	case errors.Is(err, context.Canceled):
		return "it was cancelled"
	}
	if symbol != "" {
		return "market data for " + symbol + " is unavailable"
	}
	return "something went wrong"
}

func routeClass(f llm.Failure) string {
	switch f.Class {
	case llm.ClassRateLimited:
		return "the model route is rate limited"
	case llm.ClassServerError:
		return "the model route had a server error"
	case llm.ClassTimeout:
		return "the model route timed out"
	case llm.ClassBroken:
		return "the model route's stream broke off"
	case llm.ClassStreamError:
		return "the model route reported an error"
	case llm.ClassConnection:
		return "the model route could not be reached"
	case llm.ClassCanceled:
		return "the model call was cancelled"
	case llm.ClassClient:
		switch f.HTTPStatus {
		case http.StatusUnauthorized, http.StatusForbidden:
			return "the route refused the key"
		case http.StatusPaymentRequired:
			return "the route refused: its account is out of quota"
		case http.StatusNotFound:
			return "the route does not know the model"
		}
		return "the route refused the request"
	}
	return "the model call failed"
}

// public logs err in full under a new reference and returns what a user may
// read of it.
func (e *Engine) public(err error, symbol string, attrs ...any) *PublicError {
	var pe *PublicError
	if errors.As(err, &pe) {
		return pe
	}
	p := &PublicError{Class: FailureClass(err, symbol), Ref: newRef(), Err: err}
	e.log().Warn("failure shown to the user by reference", append([]any{"ref", p.Ref, "class", p.Class, "err", err}, attrs...)...)
	return p
}

func newRef() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
