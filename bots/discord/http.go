package discord

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"
)

// InteractionsPath is where Discord posts interactions when they come over HTTP.
const InteractionsPath = "/discord/interactions"

// safetyNet is when the HTTP endpoint answers with a deferral on its own if
// the handler has not answered (it always should have by DeferAfter).
const safetyNet = 2700 * time.Millisecond

// Mount adds the interactions endpoint (POST /discord/interactions) to mux.
func (a *Adapter) Mount(mux *http.ServeMux) {
	mux.HandleFunc("POST "+InteractionsPath, a.serveInteraction)
}

// serveInteraction checks an interaction's signature and age, answers PING,
// and otherwise answers with the handler's first response.
func (a *Adapter) serveInteraction(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	if a.pub == nil {
		http.Error(w, "interactions are not taken over HTTP", http.StatusNotFound)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	// Signature first: an unauthenticated caller learns nothing else.
	if !discordgo.VerifyInteraction(r, a.pub) {
		http.Error(w, "invalid request signature", http.StatusUnauthorized)
		return
	}
	// VerifyInteraction does not look at the timestamp's age: a captured
	// request could be replayed for ever.
	ts, err := strconv.ParseInt(r.Header.Get("X-Signature-Timestamp"), 10, 64)
	if err != nil {
		http.Error(w, "invalid request timestamp", http.StatusUnauthorized)
		return
	}
	if age := a.now().Sub(time.Unix(ts, 0)); age > maxSignatureAge || age < -maxSignatureAge {
		http.Error(w, "stale request", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	var i discordgo.Interaction
	if err := json.Unmarshal(body, &i); err != nil {
		http.Error(w, "malformed interaction", http.StatusBadRequest)
		return
	}
	if i.Type == discordgo.InteractionPing {
		writeJSON(w, &discordgo.InteractionResponse{Type: discordgo.InteractionResponsePong})
		return
	}
	if !a.enter() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	hr := &httpResponder{ch: make(chan *discordgo.InteractionResponse, 1)}
	go func() {
		defer a.inflight.Done()
		a.handle(&i, received, hr)
	}()
	writeJSON(w, hr.wait(r.Context(), i.Type == discordgo.InteractionMessageComponent, safetyNet-time.Since(received)))
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "cannot encode the response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// httpResponder hands the handler's first response to the HTTP answer.
type httpResponder struct {
	mu    sync.Mutex
	state int // 0 waiting, 1 answered, 2 a deferral went out instead
	ch    chan *discordgo.InteractionResponse
}

func (h *httpResponder) respond(_ context.Context, resp *discordgo.InteractionResponse) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.state {
	case 1:
		return errors.New("discord: interaction already answered")
	case 2:
		return errAnsweredLate
	}
	h.state = 1
	h.ch <- resp
	return nil
}

// wait returns the response to write: the handler's, or a deferral if it has
// none within limit (ephemeral "thinking" for a command, an acknowledged
// update for a button).
func (h *httpResponder) wait(ctx context.Context, component bool, limit time.Duration) *discordgo.InteractionResponse {
	timer := time.NewTimer(max(limit, 0))
	defer timer.Stop()
	select {
	case resp := <-h.ch:
		return resp
	case <-timer.C:
	case <-ctx.Done():
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == 1 {
		return <-h.ch
	}
	h.state = 2
	if component {
		return &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate}
	}
	return &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Flags: discordgo.MessageFlagsEphemeral}}
}
