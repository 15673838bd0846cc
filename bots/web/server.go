package web

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"
)

// Limits of the front door. Every POST route (chat webhooks, Discord
// interactions) gets MaxBody; slow clients are cut off by the timeouts.
const (
	MaxBody           = 1 << 20 // 1 MiB: a Telegram update or Discord interaction is a few KB
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second // the whole request, body included
	WriteTimeout      = 30 * time.Second // a receipt page, a webhook's answer
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
)

// NewServer is an http.Server for h with forgebot's timeouts and header
// limit; wrap h in LimitBodies for the body limit.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout,
		WriteTimeout: WriteTimeout, IdleTimeout: IdleTimeout, MaxHeaderBytes: MaxHeaderBytes}
}

// LimitBodies caps every request body at limit bytes: a declared length
// above it is answered 413 without reading, and a body that grows past it
// fails the handler's read (http.MaxBytesReader, which also answers 413 and
// closes the connection).
func LimitBodies(h http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		h.ServeHTTP(w, r)
	})
}

// bearer guards h with "Authorization: Bearer token" (compared in constant
// time); anything else is a 401.
func bearer(h http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="forgebot metrics"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
