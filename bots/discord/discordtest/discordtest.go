// Package discordtest is a fake Discord for tests, on one httptest server:
// the REST routes a bot uses (gateway discovery, application command
// registration, interaction callbacks, webhook edits of @original and of
// followups, followups, channel messages and their edits, with multipart
// attachments) and a gateway websocket (HELLO, IDENTIFY, READY, heartbeat
// ACKs, INTERACTION_CREATE dispatch). It can also post signed interactions
// to an HTTP interactions endpoint.
//
// It behaves as Discord does where a bot can get it wrong: an interaction
// answered after 3 s or twice is refused, an interaction token dies after 15
// minutes (by the clock in Options), messages breaking Discord's limits (or
// carrying a link button Options.RefuseLink names) are refused with 400,
// per-route rate-limit buckets answer with X-RateLimit-* headers and 429s,
// and scripted 429s can be queued. Every request is recorded (tokens blanked
// out of paths) for assertions.
package discordtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"
)

// Options shape a fake.
type Options struct {
	// Now is the clock interaction tokens expire by; default time.Now.
	Now func() time.Time
	// HeartbeatInterval is sent in HELLO; default 41.25 s.
	HeartbeatInterval time.Duration
	// Buckets are per-route rate limits, each per major parameter (channel,
	// webhook token, interaction).
	Buckets []Bucket
	// RefuseLink says which link button URLs Discord refuses (it does not
	// take every URL a browser would): a message with one is refused with
	// 400, code 50035 (Invalid Form Body), and Request.Refused says why.
	RefuseLink func(url string) bool
}

// Bucket limits a route: at most Limit requests per Window for each major
// parameter. Route is as Request.Route names it, e.g.
// "PATCH /channels/{channel}/messages/{message}".
type Bucket struct {
	Route  string
	Limit  int
	Window time.Duration
}

// Routes, as Request.Route names them.
const (
	RouteGateway         = "GET /gateway"
	RouteGatewayBot      = "GET /gateway/bot"
	RouteGlobalCommands  = "PUT /applications/{app}/commands"
	RouteGuildCommands   = "PUT /applications/{app}/guilds/{guild}/commands"
	RouteCallback        = "POST /interactions/{interaction}/{token}/callback"
	RouteWebhookEdit     = "PATCH /webhooks/{app}/{token}/messages/{message}"
	RouteWebhookDelete   = "DELETE /webhooks/{app}/{token}/messages/{message}"
	RouteFollowup        = "POST /webhooks/{app}/{token}"
	RouteChannelMessage  = "POST /channels/{channel}/messages"
	RouteChannelEdit     = "PATCH /channels/{channel}/messages/{message}"
	RouteUserChannel     = "POST /users/@me/channels" // opens a DM: its channel id is DMChannel(user)
	RouteHTTPInteraction = "HTTP interaction"         // an interaction posted by Post; its answer is the callback
)

// TokenLife is how long an interaction token works.
const TokenLife = 15 * time.Minute

// Deadline is the time to answer an interaction.
const Deadline = 3 * time.Second

// Server is a fake Discord.
type Server struct {
	// URL is the base to give a bot as its API URL (REST under /api/v9/,
	// the gateway at /).
	URL      string
	AppID    string
	BotToken string
	// PublicKey verifies the interactions Post signs.
	PublicKey ed25519.PublicKey

	private ed25519.PrivateKey
	srv     *httptest.Server
	opts    Options

	mu           sync.Mutex
	changed      chan struct{}
	seq          int64
	requests     []Request
	messages     map[string]*Message
	order        []string
	interactions map[string]*interaction // by token
	byID         map[string]*interaction
	callbacks    []Callback
	commands     map[string]json.RawMessage // by scope: "global" or a guild id
	buckets      map[string]*bucketState
	script       map[string][]time.Duration // route → retry-afters of scripted 429s
	limited      int
	gateway      GatewayStats
	conns        map[*gwConn]bool
	gwSeq        int64
}

// Request is one REST request as the fake saw it.
type Request struct {
	Route  string
	Method string
	Path   string // with tokens replaced by {token}
	Major  string // the bucket's major parameter
	At     time.Time
	Status int
	Code   int  // the Discord error code answered, if any
	Bot    bool // authorised with the bot token
	// TokenAge is how old the interaction token was (webhook and callback
	// routes), by Options.Now.
	TokenAge time.Duration
	Payload  json.RawMessage // JSON body, or the payload_json part
	Files    []Attachment
	// CarriesText is set when the request sends message content or embeds;
	// Mentions is its allowed_mentions as sent (nil when absent).
	CarriesText bool
	Mentions    json.RawMessage
	Violations  []string // Discord limits the payload broke
	// Refused lists what Discord refused that a bot cannot know in advance
	// (a link button URL, by Options.RefuseLink).
	Refused []string
}

// Message is a message as the fake holds it.
type Message struct {
	ID, ChannelID string
	Ephemeral     bool
	// Source is "channel" (posted with the bot token), "response" (an
	// interaction response) or "followup".
	Source          string
	Interaction     string // the interaction id behind a response or followup
	Content         string
	Embeds          []*discordgo.MessageEmbed
	Components      []Row
	RawComponents   json.RawMessage
	Attachments     []Attachment
	AllowedMentions json.RawMessage
	Loading         bool // a deferred response not yet edited
	Deleted         bool
	Edits           int
}

// Row is an action row of buttons.
type Row []Button

// Button is a component as sent.
type Button struct {
	Type     int    `json:"type"` // 2 a button, 3 a string select menu
	Label    string `json:"label"`
	Style    int    `json:"style"`
	CustomID string `json:"custom_id"`
	URL      string `json:"url"`
	// A select menu's placeholder and options.
	Placeholder string       `json:"placeholder"`
	Options     []MenuOption `json:"options"`
}

// MenuOption is one choice of a select menu.
type MenuOption struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// Attachment is an uploaded file.
type Attachment struct {
	Filename, ContentType string
	Data                  []byte
}

// Callback is an interaction's first response.
type Callback struct {
	InteractionID string
	Type          int
	Data          json.RawMessage
	After         time.Duration // since the interaction was sent (real time)
	Late          bool          // after the deadline: refused
	Via           string        // "rest" or "http"
}

// GatewayStats counts the gateway's traffic.
type GatewayStats struct {
	Connections, Identifies, Heartbeats, Acks, Dispatches int
	Intents                                               int
	LastIdentifyToken                                     string // "Bot <token>" as sent, to check
}

type interaction struct {
	id, token  string
	typ        int
	channel    string
	component  string // the message a button was on
	issued     time.Time
	sent       time.Time
	answered   bool
	original   string // @original's message id
	followups  map[string]bool
	raw        []byte
	responseTy int
}

type bucketState struct {
	remaining int
	reset     time.Time
}

// New starts a fake and stops it when the test ends.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 41250 * time.Millisecond
	}
	s := &Server{AppID: "100000000000000001", BotToken: "fake-bot-token-" + hex.EncodeToString(pub[:6]),
		PublicKey: pub, private: priv, opts: opts, changed: make(chan struct{}),
		messages: map[string]*Message{}, interactions: map[string]*interaction{}, byID: map[string]*interaction{},
		commands: map[string]json.RawMessage{}, buckets: map[string]*bucketState{}, script: map[string][]time.Duration{},
		conns: map[*gwConn]bool{}, seq: 200000000000000000}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	tb.Cleanup(s.Close)
	return s
}

// Close disconnects gateway sessions and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	for c := range s.conns {
		_ = c.ws.Close()
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// notify wakes waiters; call with s.mu held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) nextID() string {
	s.seq++
	return strconv.FormatInt(s.seq, 10)
}

// Wait blocks until cond holds, re-checking whenever the fake changes, and
// fails the test after timeout. cond may call the Server's getters.
func (s *Server) Wait(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			tb.Fatalf("discordtest: waited %s for %s", timeout, what)
		}
	}
}

// Requests returns every request so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Messages returns every message, oldest first (deleted ones included).
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, id := range s.order {
		out = append(out, *s.messages[id])
	}
	return out
}

// Message returns one message.
func (s *Server) Message(id string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.messages[id]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// Callback returns an interaction's first response.
func (s *Server) Callback(interactionID string) (Callback, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.callbacks {
		if c.InteractionID == interactionID {
			return c, true
		}
	}
	return Callback{}, false
}

// Callbacks returns every first response.
func (s *Server) Callbacks() []Callback {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Callback(nil), s.callbacks...)
}

// Original returns an interaction's @original message, if it has one.
func (s *Server) Original(interactionID string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.byID[interactionID]
	if in == nil || in.original == "" {
		return Message{}, false
	}
	return *s.messages[in.original], true
}

// Followups returns an interaction's followup messages.
func (s *Server) Followups(interactionID string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, id := range s.order {
		if m := s.messages[id]; m.Source == "followup" && m.Interaction == interactionID {
			out = append(out, *m)
		}
	}
	return out
}

// Commands returns the commands registered globally (scope "global") or in
// a guild (its id), as sent.
func (s *Server) Commands(scope string) []*discordgo.ApplicationCommand {
	s.mu.Lock()
	raw := s.commands[scope]
	s.mu.Unlock()
	var out []*discordgo.ApplicationCommand
	_ = json.Unmarshal(raw, &out)
	return out
}

// Limited is how many 429s the fake has answered.
func (s *Server) Limited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limited
}

// Gateway reports the gateway's traffic.
func (s *Server) Gateway() GatewayStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gateway
}

// Script429 makes the next n requests on route answer 429 with retryAfter.
func (s *Server) Script429(route string, n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.script[route] = append(s.script[route], retryAfter)
	}
}

// ---- interactions a user makes ----

// User is who acts: a user id and, in a guild, their roles.
type User struct {
	ID    string
	Roles []string
}

// Where is a channel, in a guild or not ("" = a DM).
type Where struct {
	Channel, Guild string
}

// Option is a slash command option as Discord sends it.
type Option struct {
	Name    string `json:"name"`
	Type    int    `json:"type"`
	Value   any    `json:"value,omitempty"`
	Focused bool   `json:"focused,omitempty"`
}

// String is a string option.
func String(name, v string) Option { return Option{Name: name, Type: 3, Value: v} }

// Bool is a boolean option.
func Bool(name string, v bool) Option { return Option{Name: name, Type: 5, Value: v} }

// Focused is the string option being typed, for autocomplete.
func Focused(name, v string) Option { return Option{Name: name, Type: 3, Value: v, Focused: true} }

// Interaction is an interaction the fake made, to deliver with Dispatch or Post.
type Interaction struct {
	ID, Token string
	Body      []byte
}

func (s *Server) newInteraction(typ int, u User, w Where, data any, message map[string]any) *Interaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID()
	token := "itok-" + id + "-" + hex.EncodeToString(randomBytes(12))
	body := map[string]any{"id": id, "application_id": s.AppID, "type": typ, "data": data, "channel_id": w.Channel,
		"token": token, "version": 1, "locale": "en-US"}
	user := map[string]any{"id": u.ID, "username": "user" + u.ID, "discriminator": "0", "global_name": "User " + u.ID}
	if w.Guild != "" {
		roles := u.Roles
		if roles == nil {
			roles = []string{}
		}
		body["guild_id"] = w.Guild
		body["member"] = map[string]any{"user": user, "roles": roles, "joined_at": "2024-01-01T00:00:00Z", "permissions": "2048"}
	} else {
		body["user"] = user
	}
	in := &interaction{id: id, token: token, typ: typ, channel: w.Channel, issued: s.opts.Now(), followups: map[string]bool{}}
	if message != nil {
		body["message"] = message
		in.component = message["id"].(string)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	in.raw = raw
	s.interactions[token] = in
	s.byID[id] = in
	return &Interaction{ID: id, Token: token, Body: raw}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Command makes a slash command interaction.
func (s *Server) Command(u User, w Where, name string, opts ...Option) *Interaction {
	if opts == nil {
		opts = []Option{}
	}
	return s.newInteraction(2, u, w, map[string]any{"id": "300000000000000001", "name": name, "type": 1, "options": opts}, nil)
}

// Autocomplete makes an autocomplete interaction; one option is Focused.
func (s *Server) Autocomplete(u User, w Where, name string, opts ...Option) *Interaction {
	return s.newInteraction(4, u, w, map[string]any{"id": "300000000000000001", "name": name, "type": 1, "options": opts}, nil)
}

// Click makes a button press on message m (in m's channel) with custom_id.
func (s *Server) Click(u User, guild string, m Message, customID string) *Interaction {
	msg := map[string]any{"id": m.ID, "channel_id": m.ChannelID, "content": m.Content, "embeds": m.Embeds,
		"components": m.RawComponents, "type": 0, "timestamp": "2024-01-01T00:00:00Z", "tts": false, "mention_everyone": false,
		"author": map[string]any{"id": "100000000000000009", "username": "forgebot", "bot": true}}
	if m.Ephemeral {
		msg["flags"] = 64
	}
	if m.Source != "channel" {
		msg["webhook_id"] = s.AppID
		msg["interaction_metadata"] = map[string]any{"id": m.Interaction, "type": 2, "user": map[string]any{"id": u.ID, "username": "u"}}
	}
	return s.newInteraction(3, u, Where{Channel: m.ChannelID, Guild: guild}, map[string]any{"custom_id": customID, "component_type": 2}, msg)
}

// Choose picks value in the select menu customID of message m.
func (s *Server) Choose(u User, guild string, m Message, customID, value string) *Interaction {
	in := s.Click(u, guild, m, customID)
	var body map[string]any
	_ = json.Unmarshal(in.Body, &body)
	body["data"] = map[string]any{"custom_id": customID, "component_type": 3, "values": []string{value}}
	in.Body, _ = json.Marshal(body)
	s.mu.Lock()
	if it := s.interactions[in.Token]; it != nil {
		it.raw = in.Body
	}
	s.mu.Unlock()
	return in
}

// Dispatch sends an interaction over every connected gateway session.
func (s *Server) Dispatch(tb testing.TB, in *Interaction) {
	tb.Helper()
	s.mu.Lock()
	var conns []*gwConn
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.gwSeq++
	seq := s.gwSeq
	if it := s.interactions[in.Token]; it != nil {
		it.sent = time.Now()
	}
	s.gateway.Dispatches++
	s.mu.Unlock()
	if len(conns) == 0 {
		tb.Fatal("discordtest: no gateway session to dispatch to")
	}
	frame, _ := json.Marshal(map[string]any{"op": 0, "s": seq, "t": "INTERACTION_CREATE", "d": json.RawMessage(in.Body)})
	for _, c := range conns {
		if err := c.write(frame); err != nil {
			tb.Errorf("discordtest: dispatch: %v", err)
		}
	}
}

// Sign signs body for the interactions endpoint at timestamp ts with key
// (the fake's own key when nil), returning the signature and timestamp headers.
func (s *Server) Sign(body []byte, ts time.Time, key ed25519.PrivateKey) (sig, stamp string) {
	if key == nil {
		key = s.private
	}
	stamp = strconv.FormatInt(ts.Unix(), 10)
	return hex.EncodeToString(ed25519.Sign(key, append([]byte(stamp), body...))), stamp
}

// PostRaw posts body to an interactions endpoint with the given headers.
func (s *Server) PostRaw(url string, body []byte, sig, stamp string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature-Ed25519", sig)
	req.Header.Set("X-Signature-Timestamp", stamp)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// Post delivers an interaction to an HTTP interactions endpoint, signed now
// (by Options.Now), as Discord does, and takes the answer as its callback.
// It returns the HTTP status.
func (s *Server) Post(tb testing.TB, url string, in *Interaction) int {
	tb.Helper()
	sig, stamp := s.Sign(in.Body, s.opts.Now(), nil)
	s.mu.Lock()
	it := s.interactions[in.Token]
	it.sent = time.Now()
	s.mu.Unlock()
	resp, body, err := s.PostRaw(url, in.Body, sig, stamp)
	if err != nil {
		tb.Fatalf("discordtest: post interaction: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	req := Request{Route: RouteHTTPInteraction, Method: "POST", Path: "(endpoint)", At: time.Now(), Payload: body}
	status, code := s.callback(&req, it, body, "http")
	req.Status, req.Code = status, code
	s.requests = append(s.requests, req)
	s.notify()
	if status != http.StatusOK && status != http.StatusNoContent {
		tb.Errorf("discordtest: the endpoint's answer was refused: %d (code %d): %s", status, code, body)
	}
	return resp.StatusCode
}

// ---- REST ----

// apiError writes Discord's JSON error.
func apiError(w http.ResponseWriter, status, code int, msg string) (int, int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg})
	return status, code
}

func writeJSON(w http.ResponseWriter, status int, v any) (int, int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
	return status, 0
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		s.serveGateway(w, r)
		return
	}
	prefix := "/api/v" + discordgo.APIVersion + "/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		apiError(w, 404, 0, "unknown API version")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, prefix), "/")
	route, major := routeOf(r.Method, parts)
	req := Request{Route: route, Method: r.Method, Major: major, At: time.Now(), Path: redactPath(parts),
		Bot: r.Header.Get("Authorization") == "Bot "+s.BotToken}
	payload, files, err := readPayload(r)
	if err != nil {
		req.Status, req.Code = apiError(w, 400, 50109, "invalid body: "+err.Error())
		s.record(req)
		return
	}
	req.Payload, req.Files = payload, files

	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		s.requests = append(s.requests, req)
		s.notify()
	}()
	if route == "" {
		req.Status, req.Code = apiError(w, 404, 0, "404: Not Found")
		return
	}
	if s.rateLimited(w, &req) {
		return
	}
	switch route {
	case RouteGateway, RouteGatewayBot:
		if !req.Bot && route == RouteGatewayBot {
			req.Status, req.Code = apiError(w, 401, 0, "401: Unauthorized")
			return
		}
		// The host is one that does not resolve: a bot reaches the gateway
		// only by dialling the API's host, as its API URL says.
		req.Status, req.Code = writeJSON(w, 200, map[string]any{"url": "ws://gateway.discord.invalid", "shards": 1,
			"session_start_limit": map[string]int{"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})
	case RouteGlobalCommands, RouteGuildCommands:
		if !req.Bot {
			req.Status, req.Code = apiError(w, 401, 0, "401: Unauthorized")
			return
		}
		scope := "global"
		if route == RouteGuildCommands {
			scope = parts[3]
		}
		var cmds []map[string]any
		if err := json.Unmarshal(payload, &cmds); err != nil {
			req.Status, req.Code = apiError(w, 400, 50035, "Invalid Form Body")
			return
		}
		for _, c := range cmds {
			c["id"], c["application_id"], c["version"] = s.nextID(), s.AppID, "1"
		}
		s.commands[scope] = payload
		req.Status, req.Code = writeJSON(w, 200, cmds)
	case RouteCallback:
		it := s.interactions[parts[2]]
		if it == nil || it.id != parts[1] {
			req.Status, req.Code = apiError(w, 404, discordgo.ErrCodeUnknownInteraction, "Unknown interaction")
			return
		}
		req.TokenAge = s.opts.Now().Sub(it.issued)
		status, code := s.callback(&req, it, payload, "rest")
		if code != 0 {
			req.Status, req.Code = apiError(w, status, code, "refused")
			return
		}
		w.WriteHeader(http.StatusNoContent)
		req.Status = http.StatusNoContent
	case RouteWebhookEdit, RouteWebhookDelete, RouteFollowup:
		s.webhook(w, &req, parts)
	case RouteChannelMessage, RouteChannelEdit:
		s.channel(w, &req, parts)
	case RouteUserChannel:
		var body struct {
			RecipientID string `json:"recipient_id"`
		}
		if !req.Bot {
			req.Status, req.Code = apiError(w, 401, 0, "401: Unauthorized")
			return
		}
		if json.Unmarshal(payload, &body) != nil || body.RecipientID == "" {
			req.Status, req.Code = apiError(w, 400, 50035, "Invalid Form Body")
			return
		}
		req.Status, req.Code = writeJSON(w, 200, map[string]any{"id": DMChannel(body.RecipientID), "type": 1,
			"recipients": []map[string]any{{"id": body.RecipientID, "username": "user" + body.RecipientID}}})
	}
}

// DMChannel is the id of the DM channel the fake opens with a user.
func DMChannel(userID string) string { return "dm-" + userID }

func (s *Server) record(req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
	s.notify()
}

// routeOf names a request's route and its major parameter.
func routeOf(method string, p []string) (route, major string) {
	n := len(p)
	switch {
	case method == "GET" && n == 1 && p[0] == "gateway":
		return RouteGateway, ""
	case method == "GET" && n == 2 && p[0] == "gateway" && p[1] == "bot":
		return RouteGatewayBot, ""
	case method == "PUT" && n == 3 && p[0] == "applications" && p[2] == "commands":
		return RouteGlobalCommands, p[1]
	case method == "PUT" && n == 5 && p[0] == "applications" && p[2] == "guilds" && p[4] == "commands":
		return RouteGuildCommands, p[3]
	case method == "POST" && n == 4 && p[0] == "interactions" && p[3] == "callback":
		return RouteCallback, p[1]
	case method == "PATCH" && n == 5 && p[0] == "webhooks" && p[3] == "messages":
		return RouteWebhookEdit, p[2]
	case method == "DELETE" && n == 5 && p[0] == "webhooks" && p[3] == "messages":
		return RouteWebhookDelete, p[2]
	case method == "POST" && n == 3 && p[0] == "webhooks":
		return RouteFollowup, p[2]
	case method == "POST" && n == 3 && p[0] == "channels" && p[2] == "messages":
		return RouteChannelMessage, p[1]
	case method == "PATCH" && n == 4 && p[0] == "channels" && p[2] == "messages":
		return RouteChannelEdit, p[1]
	case method == "POST" && n == 3 && p[0] == "users" && p[1] == "@me" && p[2] == "channels":
		return RouteUserChannel, ""
	}
	return "", ""
}

func redactPath(p []string) string {
	out := append([]string(nil), p...)
	if len(out) > 2 && (out[0] == "webhooks" || out[0] == "interactions") {
		out[2] = "{token}"
	}
	return "/" + strings.Join(out, "/")
}

// readPayload reads a JSON body or a multipart body's payload_json and files.
func readPayload(r *http.Request) (json.RawMessage, []Attachment, error) {
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, nil, err
		}
		if len(b) > 0 && !json.Valid(b) {
			return nil, nil, fmt.Errorf("not JSON")
		}
		return b, nil, nil
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var (
		payload json.RawMessage
		files   []Attachment
	)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		b, err := io.ReadAll(part)
		if err != nil {
			return nil, nil, err
		}
		switch name := part.FormName(); {
		case name == "payload_json":
			payload = b
		case strings.HasPrefix(name, "files["):
			files = append(files, Attachment{Filename: part.FileName(), ContentType: part.Header.Get("Content-Type"), Data: b})
		}
	}
	if payload == nil || !json.Valid(payload) {
		return nil, nil, fmt.Errorf("multipart without payload_json")
	}
	return payload, files, nil
}

// rateLimited applies scripted 429s and buckets; call with s.mu held.
func (s *Server) rateLimited(w http.ResponseWriter, req *Request) bool {
	limit429 := func(wait time.Duration, bucket string) bool {
		secs := math.Max(wait.Seconds(), 0.001)
		w.Header().Set("X-RateLimit-Limit", "1")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset-After", strconv.FormatFloat(secs, 'f', 3, 64))
		w.Header().Set("X-RateLimit-Bucket", bucket)
		w.Header().Set("X-RateLimit-Scope", "user")
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(secs))))
		req.Status, req.Code = writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"message": "You are being rate limited.", "retry_after": secs, "global": false})
		s.limited++
		return true
	}
	if q := s.script[req.Route]; len(q) > 0 {
		s.script[req.Route] = q[1:]
		return limit429(q[0], "scripted")
	}
	for _, b := range s.opts.Buckets {
		if b.Route != req.Route {
			continue
		}
		key := b.Route + "|" + req.Major
		st := s.buckets[key]
		now := time.Now()
		if st == nil || !now.Before(st.reset) {
			st = &bucketState{remaining: b.Limit, reset: now.Add(b.Window)}
			s.buckets[key] = st
		}
		if st.remaining <= 0 {
			return limit429(st.reset.Sub(now), hex.EncodeToString([]byte(key))[:16])
		}
		st.remaining--
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(b.Limit))
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(st.remaining))
		w.Header().Set("X-RateLimit-Reset-After", strconv.FormatFloat(st.reset.Sub(now).Seconds(), 'f', 3, 64))
		w.Header().Set("X-RateLimit-Bucket", hex.EncodeToString([]byte(key))[:16])
	}
	return false
}

// msgPayload is the message part of a request.
type msgPayload struct {
	Content         *string                    `json:"content"`
	Embeds          *[]*discordgo.MessageEmbed `json:"embeds"`
	Components      json.RawMessage            `json:"components"`
	AllowedMentions json.RawMessage            `json:"allowed_mentions"`
	Flags           int                        `json:"flags"`
}

// inspect fills a request's text and mention fields and checks Discord's
// limits; it returns the violations.
func inspect(req *Request, m msgPayload, files []Attachment, existing []Attachment) []string {
	req.CarriesText = (m.Content != nil && *m.Content != "") || (m.Embeds != nil && len(*m.Embeds) > 0)
	req.Mentions = m.AllowedMentions
	var v []string
	if m.Content != nil && units(*m.Content) > 2000 {
		v = append(v, "content over 2000")
	}
	if m.Embeds != nil {
		embeds := *m.Embeds
		if len(embeds) > 10 {
			v = append(v, "more than 10 embeds")
		}
		total := 0
		for i, e := range embeds {
			if e == nil {
				continue
			}
			if units(e.Title) > 256 {
				v = append(v, fmt.Sprintf("embed %d title over 256", i))
			}
			if units(e.Description) > 4096 {
				v = append(v, fmt.Sprintf("embed %d description over 4096", i))
			}
			if len(e.Fields) > 25 {
				v = append(v, fmt.Sprintf("embed %d has over 25 fields", i))
			}
			total += units(e.Title) + units(e.Description)
			for _, f := range e.Fields {
				if f.Name == "" || f.Value == "" {
					v = append(v, fmt.Sprintf("embed %d has an empty field", i))
				}
				if units(f.Name) > 256 || units(f.Value) > 1024 {
					v = append(v, fmt.Sprintf("embed %d field %q over its limit", i, f.Name))
				}
				total += units(f.Name) + units(f.Value)
			}
			if e.Footer != nil {
				if units(e.Footer.Text) > 2048 {
					v = append(v, fmt.Sprintf("embed %d footer over 2048", i))
				}
				total += units(e.Footer.Text)
			}
			if e.Image != nil && strings.HasPrefix(e.Image.URL, "attachment://") {
				name := strings.TrimPrefix(e.Image.URL, "attachment://")
				found := false
				for _, f := range append(append([]Attachment(nil), files...), existing...) {
					found = found || f.Filename == name
				}
				if !found {
					v = append(v, "embed image names a file not attached: "+name)
				}
			}
		}
		if total > 6000 {
			v = append(v, fmt.Sprintf("embeds total %d over 6000", total))
		}
	}
	if len(m.Components) > 0 && string(m.Components) != "null" {
		var rows []struct {
			Type       int      `json:"type"`
			Components []Button `json:"components"`
		}
		if err := json.Unmarshal(m.Components, &rows); err != nil {
			v = append(v, "components: "+err.Error())
		}
		if len(rows) > 5 {
			v = append(v, "more than 5 rows")
		}
		for _, r := range rows {
			if r.Type != 1 || len(r.Components) == 0 || len(r.Components) > 5 {
				v = append(v, "a row must hold 1 to 5 components")
			}
			for _, b := range r.Components {
				if units(b.Label) > 80 {
					v = append(v, "button label over 80")
				}
				switch {
				case b.Style == 5 && (b.URL == "" || b.CustomID != ""):
					v = append(v, "a link button needs a url and no custom_id")
				case b.Style != 5 && (b.CustomID == "" || len(b.CustomID) > 100 || b.URL != ""):
					v = append(v, fmt.Sprintf("custom_id %q must be 1 to 100 characters", b.CustomID))
				}
			}
		}
	}
	return v
}

// refuse checks a message part of a request against Discord's limits and
// against Options.RefuseLink, filling req.Violations and req.Refused; it
// says whether Discord refuses it.
func (s *Server) refuse(req *Request, m msgPayload, files, existing []Attachment) bool {
	req.Violations = inspect(req, m, files, existing)
	if s.opts.RefuseLink != nil && len(m.Components) > 0 && string(m.Components) != "null" {
		for i, r := range rowsOf(m.Components) {
			for j, b := range r {
				if b.Style == 5 && s.opts.RefuseLink(b.URL) {
					req.Refused = append(req.Refused, fmt.Sprintf("components.%d.components.%d.url: Not a well formed URL.", i, j))
				}
			}
		}
	}
	return len(req.Violations)+len(req.Refused) > 0
}

// invalidForm answers a refused message as Discord does.
func invalidForm(w http.ResponseWriter, req *Request) (int, int) {
	return apiError(w, 400, 50035, "Invalid Form Body: "+strings.Join(append(append([]string(nil), req.Violations...), req.Refused...), "; "))
}

func units(s string) int {
	n := 0
	for _, r := range s {
		n += max(utf16.RuneLen(r), 1)
	}
	return n
}

func rowsOf(raw json.RawMessage) []Row {
	var rows []struct {
		Components []Button `json:"components"`
	}
	_ = json.Unmarshal(raw, &rows)
	var out []Row
	for _, r := range rows {
		out = append(out, r.Components)
	}
	return out
}

// newMessage stores a message; call with s.mu held.
func (s *Server) newMessage(channel, source, interactionID string, p msgPayload, files []Attachment) *Message {
	m := &Message{ID: s.nextID(), ChannelID: channel, Source: source, Interaction: interactionID,
		Ephemeral: p.Flags&64 != 0, Attachments: files, AllowedMentions: p.AllowedMentions}
	if p.Content != nil {
		m.Content = *p.Content
	}
	if p.Embeds != nil {
		m.Embeds = *p.Embeds
	}
	if len(p.Components) > 0 && string(p.Components) != "null" {
		m.RawComponents, m.Components = p.Components, rowsOf(p.Components)
	}
	s.messages[m.ID] = m
	s.order = append(s.order, m.ID)
	return m
}

// apply edits a message (files are appended, as API v9 does).
func apply(m *Message, p msgPayload, files []Attachment) {
	if p.Content != nil {
		m.Content = *p.Content
	}
	if p.Embeds != nil {
		m.Embeds = *p.Embeds
	}
	if len(p.Components) > 0 && string(p.Components) != "null" {
		m.RawComponents, m.Components = p.Components, rowsOf(p.Components)
	}
	m.Attachments = append(append([]Attachment(nil), m.Attachments...), files...)
	m.AllowedMentions = p.AllowedMentions
	m.Loading = false
	m.Edits++
}

// callback takes an interaction's first response; call with s.mu held. It
// returns the status and, on refusal, Discord's error code.
func (s *Server) callback(req *Request, it *interaction, payload []byte, via string) (int, int) {
	var body struct {
		Type int              `json:"type"`
		Data *json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(payload, &body); err != nil {
		return 400, 50035
	}
	after := time.Since(it.sent)
	cb := Callback{InteractionID: it.id, Type: body.Type, After: after, Via: via}
	if body.Data != nil {
		cb.Data = *body.Data
	}
	if it.answered {
		return 400, discordgo.ErrCodeInteractionHasAlreadyBeenAcknowledged
	}
	if after > Deadline {
		cb.Late = true
		s.callbacks = append(s.callbacks, cb)
		return 404, discordgo.ErrCodeUnknownInteraction
	}
	var m msgPayload
	if body.Data != nil {
		_ = json.Unmarshal(*body.Data, &m)
	}
	switch body.Type {
	case 4, 7:
		var existing []Attachment
		if body.Type == 7 && s.messages[it.component] != nil {
			existing = s.messages[it.component].Attachments
		}
		if s.refuse(req, m, req.Files, existing) {
			return 400, 50035
		}
	}
	switch body.Type {
	case 1, 6, 8:
		if body.Type == 6 {
			it.original = it.component
		}
	case 4:
		it.original = s.newMessage(it.channel, "response", it.id, m, req.Files).ID
	case 5:
		msg := s.newMessage(it.channel, "response", it.id, m, nil)
		msg.Loading = true
		it.original = msg.ID
	case 7:
		target := s.messages[it.component]
		if target == nil {
			return 404, discordgo.ErrCodeUnknownMessage
		}
		apply(target, m, req.Files)
		it.original = target.ID
	default:
		return 400, 50035
	}
	it.answered, it.responseTy = true, body.Type
	s.callbacks = append(s.callbacks, cb)
	return 200, 0
}

func (s *Server) webhook(w http.ResponseWriter, req *Request, parts []string) {
	if parts[1] != s.AppID {
		req.Status, req.Code = apiError(w, 404, discordgo.ErrCodeUnknownWebhook, "Unknown Webhook")
		return
	}
	it := s.interactions[parts[2]]
	if it == nil {
		req.Status, req.Code = apiError(w, 404, discordgo.ErrCodeUnknownWebhook, "Unknown Webhook")
		return
	}
	req.TokenAge = s.opts.Now().Sub(it.issued)
	if req.TokenAge >= TokenLife {
		req.Status, req.Code = apiError(w, 401, discordgo.ErrCodeInvalidWebhookTokenProvided, "Invalid Webhook Token")
		return
	}
	if !it.answered {
		req.Status, req.Code = apiError(w, 404, discordgo.ErrCodeUnknownWebhook, "Unknown Webhook")
		return
	}
	var p msgPayload
	if len(req.Payload) > 0 {
		_ = json.Unmarshal(req.Payload, &p)
	}
	if req.Route == RouteFollowup {
		if s.refuse(req, p, req.Files, nil) {
			req.Status, req.Code = invalidForm(w, req)
			return
		}
		m := s.newMessage(it.channel, "followup", it.id, p, req.Files)
		it.followups[m.ID] = true
		req.Status, req.Code = writeJSON(w, 200, s.wire(m))
		return
	}
	id := parts[4]
	if id == "@original" {
		id = it.original
	} else if !it.followups[id] && id != it.original {
		id = ""
	}
	m := s.messages[id]
	if m == nil || m.Deleted {
		req.Status, req.Code = apiError(w, 404, discordgo.ErrCodeUnknownMessage, "Unknown Message")
		return
	}
	if req.Route == RouteWebhookDelete {
		m.Deleted = true
		w.WriteHeader(http.StatusNoContent)
		req.Status = http.StatusNoContent
		return
	}
	if s.refuse(req, p, req.Files, m.Attachments) {
		req.Status, req.Code = invalidForm(w, req)
		return
	}
	apply(m, p, req.Files)
	req.Status, req.Code = writeJSON(w, 200, s.wire(m))
}

func (s *Server) channel(w http.ResponseWriter, req *Request, parts []string) {
	if !req.Bot {
		req.Status, req.Code = apiError(w, 401, 0, "401: Unauthorized")
		return
	}
	var p msgPayload
	_ = json.Unmarshal(req.Payload, &p)
	if req.Route == RouteChannelMessage {
		if s.refuse(req, p, req.Files, nil) {
			req.Status, req.Code = invalidForm(w, req)
			return
		}
		p.Flags = 0
		m := s.newMessage(parts[1], "channel", "", p, req.Files)
		req.Status, req.Code = writeJSON(w, 200, s.wire(m))
		return
	}
	m := s.messages[parts[3]]
	if m == nil || m.Deleted || m.ChannelID != parts[1] || m.Ephemeral {
		req.Status, req.Code = apiError(w, 404, discordgo.ErrCodeUnknownMessage, "Unknown Message")
		return
	}
	if m.Source != "channel" {
		req.Status, req.Code = apiError(w, 403, discordgo.ErrCodeCannotEditFromAnotherUser, "Cannot edit a message authored by another user")
		return
	}
	if s.refuse(req, p, req.Files, m.Attachments) {
		req.Status, req.Code = invalidForm(w, req)
		return
	}
	apply(m, p, req.Files)
	req.Status, req.Code = writeJSON(w, 200, s.wire(m))
}

// wire is a message as the API returns it.
func (s *Server) wire(m *Message) map[string]any {
	out := map[string]any{"id": m.ID, "channel_id": m.ChannelID, "content": m.Content, "embeds": m.Embeds,
		"type": 0, "timestamp": "2024-01-01T00:00:00Z", "tts": false, "mention_everyone": false, "attachments": []any{},
		"author": map[string]any{"id": "100000000000000009", "username": "forgebot", "bot": true}}
	if m.Ephemeral {
		out["flags"] = 64
	}
	if m.RawComponents != nil {
		out["components"] = m.RawComponents
	}
	return out
}

// ---- gateway ----

type gwConn struct {
	mu sync.Mutex
	ws *websocket.Conn
}

func (c *gwConn) write(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("v") != discordgo.APIVersion || r.URL.Query().Get("encoding") != "json" {
		http.Error(w, "want ?v=9&encoding=json", http.StatusBadRequest)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &gwConn{ws: ws}
	defer ws.Close()
	s.mu.Lock()
	s.gateway.Connections++
	s.mu.Unlock()
	hello, _ := json.Marshal(map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": s.opts.HeartbeatInterval.Milliseconds()}})
	if c.write(hello) != nil {
		return
	}
	_, msg, err := ws.ReadMessage()
	if err != nil {
		return
	}
	var ident struct {
		Op int `json:"op"`
		D  struct {
			Token   string `json:"token"`
			Intents int    `json:"intents"`
		} `json:"d"`
	}
	if json.Unmarshal(msg, &ident) != nil || ident.Op != 2 {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "Decode error"), time.Now().Add(time.Second))
		return
	}
	s.mu.Lock()
	s.gateway.Identifies++
	s.gateway.Intents = ident.D.Intents
	s.gateway.LastIdentifyToken = ident.D.Token
	ok := ident.D.Token == "Bot "+s.BotToken
	s.mu.Unlock()
	if !ok {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4004, "Authentication failed."), time.Now().Add(time.Second))
		return
	}
	s.mu.Lock()
	s.gwSeq++
	seq := s.gwSeq
	s.mu.Unlock()
	ready, _ := json.Marshal(map[string]any{"op": 0, "s": seq, "t": "READY", "d": map[string]any{
		"v": 9, "session_id": "fake-session", "resume_gateway_url": "ws://gateway.discord.invalid",
		"user":        map[string]any{"id": "100000000000000009", "username": "forgebot", "bot": true, "discriminator": "0"},
		"guilds":      []any{},
		"application": map[string]any{"id": s.AppID, "flags": 0},
	}})
	if c.write(ready) != nil {
		return
	}
	s.mu.Lock()
	s.conns[c] = true
	s.notify()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.notify()
		s.mu.Unlock()
	}()
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var f struct {
			Op int `json:"op"`
		}
		if json.Unmarshal(msg, &f) != nil {
			continue
		}
		if f.Op == 1 {
			s.mu.Lock()
			s.gateway.Heartbeats++
			s.mu.Unlock()
			if c.write([]byte(`{"op":11}`)) != nil {
				return
			}
			s.mu.Lock()
			s.gateway.Acks++
			s.notify()
			s.mu.Unlock()
		}
	}
}

// Connected says whether a gateway session is identified and ready.
func (s *Server) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns) > 0
}
