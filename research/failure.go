package research

import (
	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
)

// billingFailure turns a failed model attempt into a failed-request record.
// The charge policy is: a failed request costs nothing.
func billingFailure(r Run, f llm.Failure) billing.FailedRequest {
	detail := ""
	if f.Err != nil {
		detail = f.Err.Error()
	}
	return billing.FailedRequest{
		RunID: r.ID, AccountID: r.AccountID, Route: f.Route, Bucket: f.Bucket, HTTPStatus: f.HTTPStatus,
		ErrorClass: string(f.Class), Charged: 0, Detail: detail, At: f.At,
	}
}
