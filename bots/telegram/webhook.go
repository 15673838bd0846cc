package telegram

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"time"

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
	info, ok := a.dispatch(&upd, false)
	if !ok {
		// Telegram redelivers after a failure: the next instance gets it.
		http.Error(w, "not running", http.StatusServiceUnavailable)
		return
	}
	if info != nil {
		t := time.NewTimer(a.cfg.WebhookWait)
		defer t.Stop()
		select {
		case <-info.done:
			if info.failed.Load() && !info.sent.Load() {
				// Nothing reached the user (the Bot API is down): let
				// Telegram deliver the update again, and handle it then.
				a.forget(info.id)
				a.log.Warn("telegram: update not answered; asking Telegram to redeliver it", "update_id", info.id)
				http.Error(w, "reply not delivered", http.StatusServiceUnavailable)
				return
			}
		case <-t.C: // still working: it answers on its own
		case <-r.Context().Done():
		}
	}
	w.WriteHeader(http.StatusOK)
}
