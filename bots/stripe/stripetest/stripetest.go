// Package stripetest is a fake Stripe for tests: an httptest server that
// answers Checkout Session creation and refunds as Stripe's API does (form
// bodies, bearer key, one object per idempotency key), and events signed the
// way Stripe signs webhooks (Stripe-Signature: t=TIMESTAMP,v1=HEX of
// HMAC-SHA256 over "TIMESTAMP.BODY" with the endpoint secret).
package stripetest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Keys the fake expects; tests check they never reach a log.
const (
	SecretKey     = "sk_test_forgebot_fake"
	WebhookSecret = "whsec_forgebot_fake"
)

// Session is a Checkout Session the fake made: its id, the idempotency key
// it was made with, and the form it was asked for.
type Session struct {
	ID   string
	Key  string
	Form url.Values
}

// Meta is the session's metadata as its webhook event carries it.
func (s Session) Meta() map[string]string {
	out := map[string]string{}
	for k, v := range s.Form {
		if len(k) > len("metadata[]") && k[:9] == "metadata[" && k[len(k)-1] == ']' {
			out[k[9:len(k)-1]] = v[0]
		}
	}
	return out
}

// Cents is the session's amount in cents.
func (s Session) Cents() int64 {
	n, _ := strconv.ParseInt(s.Form.Get("line_items[0][price_data][unit_amount]"), 10, 64)
	return n
}

// PaymentIntent is the id of the session's payment intent ("pi_" + session id).
func (s Session) PaymentIntent() string { return "pi_" + s.ID }

// Refund is a refund the fake was asked for.
type Refund struct {
	ID, PaymentIntent, Key string
	Amount                 int64 // cents; 0: the whole payment
}

// Server is the fake.
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	sessions []Session
	byKey    map[string]int
	refunds  []Refund
	refundBy map[string]int // idempotency key -> refunds index
	// RefuseRefunds makes every refund fail as Stripe refuses one it cannot make.
	RefuseRefunds string
	changed       chan struct{}
}

// New starts a fake Stripe, closed when the test ends.
func New(tb testing.TB) *Server {
	s := &Server{byKey: map[string]int{}, refundBy: map[string]int{}, changed: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

func stripeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"type": typ, "message": msg}})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+SecretKey {
		stripeError(w, http.StatusUnauthorized, "invalid_request_error", "Invalid API Key provided")
		return
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		stripeError(w, http.StatusNotFound, "invalid_request_error", "Unrecognized request URL")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.notify()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/v1/checkout/sessions":
		i, ok := s.byKey[key]
		if !ok || key == "" {
			i = len(s.sessions)
			s.sessions = append(s.sessions, Session{ID: fmt.Sprintf("cs_test_%d", i+1), Key: key, Form: r.PostForm})
			if key != "" {
				s.byKey[key] = i
			}
		}
		ss := s.sessions[i]
		_ = json.NewEncoder(w).Encode(map[string]any{"id": ss.ID, "object": "checkout.session",
			"url": "https://checkout.stripe.test/c/pay/" + ss.ID, "mode": "payment", "payment_status": "unpaid",
			"client_reference_id": ss.Form.Get("client_reference_id")})
	case "/v1/refunds":
		if s.RefuseRefunds != "" {
			stripeError(w, http.StatusBadRequest, "invalid_request_error", s.RefuseRefunds)
			return
		}
		i, ok := s.refundBy[key]
		if !ok || key == "" {
			amount, _ := strconv.ParseInt(r.PostForm.Get("amount"), 10, 64)
			i = len(s.refunds)
			s.refunds = append(s.refunds, Refund{ID: fmt.Sprintf("re_test_%d", i+1), PaymentIntent: r.PostForm.Get("payment_intent"), Key: key, Amount: amount})
			if key != "" {
				s.refundBy[key] = i
			}
		}
		rf := s.refunds[i]
		_ = json.NewEncoder(w).Encode(map[string]any{"id": rf.ID, "object": "refund", "status": "succeeded",
			"payment_intent": rf.PaymentIntent, "amount": rf.Amount, "currency": "usd"})
	default:
		stripeError(w, http.StatusNotFound, "invalid_request_error", "Unrecognized request URL")
	}
}

func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Sessions are the sessions made so far, oldest first.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Session(nil), s.sessions...)
}

// Refunds are the refunds made so far, oldest first.
func (s *Server) Refunds() []Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Refund(nil), s.refunds...)
}

// WaitSession waits for the n-th session (1-based) to be made.
func (s *Server) WaitSession(tb testing.TB, n int, timeout time.Duration) Session {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		if len(s.sessions) >= n {
			ss := s.sessions[n-1]
			s.mu.Unlock()
			return ss
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			tb.Fatalf("stripetest: no checkout session %d within %s", n, timeout)
		}
	}
}

// Sign makes a Stripe-Signature header the way Stripe does.
func Sign(body []byte, at time.Time, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.", at.Unix())
	mac.Write(body)
	return fmt.Sprintf("t=%d,v1=%s", at.Unix(), hex.EncodeToString(mac.Sum(nil)))
}

// Event is a webhook event's body.
func Event(id, typ string, object map[string]any) []byte {
	raw, _ := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "api_version": "2025-07-30.basil",
		"created": time.Now().Unix(), "data": map[string]any{"object": object}})
	return raw
}

// Completed is the checkout.session.completed event of s with its payment status ("paid", "unpaid").
func (s Session) Completed(eventID, status string) []byte {
	return Event(eventID, "checkout.session.completed", map[string]any{"id": s.ID, "object": "checkout.session",
		"payment_status": status, "amount_total": s.Cents(), "currency": "usd", "payment_intent": s.PaymentIntent(),
		"client_reference_id": s.Form.Get("client_reference_id"), "metadata": s.Meta()})
}

// ChargeRefunded is the charge.refunded event of s's charge, refunded cents so far.
func (s Session) ChargeRefunded(eventID string, refunded int64) []byte {
	return Event(eventID, "charge.refunded", map[string]any{"id": "ch_" + s.ID, "object": "charge", "amount": s.Cents(),
		"amount_refunded": refunded, "currency": "usd", "refunded": refunded == s.Cents(), "payment_intent": s.PaymentIntent()})
}

// Deliver posts body to a webhook URL signed now with secret, and returns the status.
func Deliver(tb testing.TB, webhookURL, secret string, body []byte) int {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, webhookURL, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", Sign(body, time.Now(), secret))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}
