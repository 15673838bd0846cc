package telegram

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"

	"github.com/go-telegram/bot/models"
)

// secretHeader carries the secret token Telegram was given with setWebhook.
const secretHeader = "X-Telegram-Bot-Api-Secret-Token"

// maxUpdate bounds a webhook body; updates are a few kilobytes.
const maxUpdate = 1 << 20

func (a *Adapter) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if a.cfg.WebhookURL == "" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	got := r.Header.Get(secretHeader)
	if subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.WebhookSecret)) != 1 {
		a.log.Warn("telegram: webhook call without the right secret token", "remote", r.RemoteAddr, "has_token", got != "")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	var upd models.Update
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxUpdate)).Decode(&upd); err != nil {
		http.Error(w, "bad update", http.StatusBadRequest)
		return
	}
	if !a.dispatch(&upd) {
		// Telegram redelivers after a failure: the next instance gets it.
		http.Error(w, "not running", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}
