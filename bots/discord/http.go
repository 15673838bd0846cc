package discord

import (
	"container/heap"
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
	if err := json.Unmarshal(body, &i); err != nil || i.ID == "" {
		http.Error(w, "malformed interaction", http.StatusBadRequest)
		return
	}
	if i.Type == discordgo.InteractionPing {
		writeJSON(w, &discordgo.InteractionResponse{Type: discordgo.InteractionResponsePong})
		return
	}
	// Within its timestamp's window a captured request is still validly
	// signed: one whose interaction was already taken is refused like a
	// forgery (401), never handled twice. Discord does not deliver an
	// interaction twice, and the first delivery's answer already went out.
	if !a.seen.first(i.ID, time.Unix(ts, 0).Add(maxSignatureAge), a.now()) {
		a.log.Warn("discord: interaction posted again; refused", "interaction_id", i.ID)
		http.Error(w, "interaction already received", http.StatusUnauthorized)
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

// maxRemembered bounds the interaction ids kept against replays: ten
// minutes of interactions at over 150 a second.
const maxRemembered = 100_000

// replayGuard remembers the ids of interactions taken over HTTP until their
// signature timestamps go stale (after which the timestamp check refuses a
// replay by itself).
type replayGuard struct {
	mu       sync.Mutex
	until    map[string]time.Time // id → when its timestamp goes stale
	queue    expiries             // the same, soonest first
	overflow func()               // called when ids start being forgotten early to stay bounded
	full     bool
}

// first records id, whose timestamp goes stale at stale, and says whether
// it is new.
func (g *replayGuard) first(id string, stale, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.until == nil {
		g.until = map[string]time.Time{}
	}
	for len(g.queue) > 0 && !g.queue[0].at.After(now) {
		delete(g.until, heap.Pop(&g.queue).(expiry).id)
	}
	if _, ok := g.until[id]; ok {
		return false
	}
	dropped := 0
	for len(g.queue) >= maxRemembered {
		// Full of live ids: forget the one closest to going stale, whose
		// replay window is the shortest left.
		delete(g.until, heap.Pop(&g.queue).(expiry).id)
		dropped++
	}
	if dropped > 0 && !g.full && g.overflow != nil {
		g.overflow()
	}
	g.full = dropped > 0
	g.until[id] = stale
	heap.Push(&g.queue, expiry{id: id, at: stale})
	return true
}

type expiry struct {
	id string
	at time.Time
}

// expiries is a min-heap by time.
type expiries []expiry

func (e expiries) Len() int           { return len(e) }
func (e expiries) Less(i, j int) bool { return e[i].at.Before(e[j].at) }
func (e expiries) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *expiries) Push(x any)        { *e = append(*e, x.(expiry)) }
func (e *expiries) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
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
