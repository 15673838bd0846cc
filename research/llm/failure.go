package llm

import (
	"errors"
	"fmt"
	"time"

	"github.com/tokensforge/forgebot/billing"
)

// Sentinel errors returned by Client.Stream; match them with errors.Is.
var (
	// ErrAllRoutesFailed: every route was tried (and retried) and none
	// answered. The error also wraps the last Failure.
	ErrAllRoutesFailed = errors.New("llm: all routes failed")
	// ErrNoRoutes: Stream got no enabled route to try.
	ErrNoRoutes = errors.New("llm: no enabled route")
	// ErrOverBudget: the Request's Budget refused every remaining attempt,
	// so no call was made that the budget could not pay for. It wraps the
	// Budget's last refusal.
	ErrOverBudget = errors.New("llm: the call does not fit what is left of its budget")
)

// ErrorClass says why an attempt failed, and so whether it is retried. The
// values are stable strings stored as billing.FailedRequest.ErrorClass.
type ErrorClass string

const (
	ClassRateLimited ErrorClass = "rate_limited"     // HTTP 429; retried, honouring Retry-After
	ClassServerError ErrorClass = "server_error"     // HTTP 5xx; retried
	ClassTimeout     ErrorClass = "timeout"          // no byte for Client.IdleTimeout, or HTTP 408; retried
	ClassBroken      ErrorClass = "broken_stream"    // the stream ended without a finish, or was cut; retried
	ClassStreamError ErrorClass = "stream_error"     // a 200 stream whose data line is an error object; retried
	ClassConnection  ErrorClass = "connection_error" // no response at all (refused, reset, DNS, TLS); retried
	ClassClient      ErrorClass = "client_error"     // HTTP 4xx other than 408 and 429; the next route is tried, this one is not retried
	ClassCanceled    ErrorClass = "canceled"         // the caller's context ended; nothing more is tried
	// ClassUsageAnomaly is not a failed attempt: the answer was kept, but the
	// provider's usage was not believed (Result.Anomaly), so the local count
	// was charged. It counts against the route's health.
	ClassUsageAnomaly ErrorClass = "usage_anomaly"
)

// Retryable reports whether an attempt that failed this way is tried again on
// the same route.
func (c ErrorClass) Retryable() bool {
	switch c {
	case ClassRateLimited, ClassServerError, ClassTimeout, ClassBroken, ClassStreamError, ClassConnection:
		return true
	}
	return false
}

// Failure is one failed HTTP attempt. It is also an error (Error, Unwrap), so
// errors.As(err, &f) on Stream's error finds the last one.
type Failure struct {
	Route      string
	Bucket     billing.Bucket
	HTTPStatus int // 0 when no response came; 200 for a stream that broke or erred after the headers
	Class      ErrorClass
	Err        error // scrubbed of the route's API key
	At         time.Time

	// DeliveredTokens is the local estimate of output tokens streamed (and
	// passed to onDelta) before the attempt failed. The provider may bill
	// them; the charge policy decides whether the user pays.
	DeliveredTokens int64

	// RetryAfter is the server's Retry-After, when it sent one.
	RetryAfter time.Duration
}

// Error describes the failure without the API key.
func (f Failure) Error() string {
	status := ""
	if f.HTTPStatus != 0 {
		status = fmt.Sprintf(" (HTTP %d)", f.HTTPStatus)
	}
	return fmt.Sprintf("route %s: %s%s: %v", f.Route, f.Class, status, f.Err)
}

// Unwrap returns the underlying error.
func (f Failure) Unwrap() error { return f.Err }
