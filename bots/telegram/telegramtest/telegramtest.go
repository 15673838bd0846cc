// Package telegramtest is a fake Telegram Bot API for tests: an httptest
// server that routes /bot<token>/<method>, parses multipart/form-data (and
// urlencoded or JSON) requests as the real API receives them, serves
// getUpdates from a scripted queue with long polling, keeps the messages of
// every chat so tests can read what a user sees, records every call, validates
// what the real API would refuse (HTML entities, message length, inline
// keyboard buttons, callback_data size), and can answer from a script (a 429
// with retry_after, a 400 "message is not modified") or enforce Telegram's
// rate limits.
package telegramtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// Token is the fake's bot token. Tests check it never shows up in logs.
const Token = "7000001:AAFakeTokenThatMustNeverBeLogged_0123456789"

// BotUser is the bot as getMe describes it.
var BotUser = User{ID: 7000001, FirstName: "forgebot", Username: "forgebot_test_bot", IsBot: true}

// NotModified is the Bot API's description for an edit that changes nothing.
const NotModified = "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"

// User is a Telegram user.
type User struct {
	ID        int64  `json:"id"`
	IsBot     bool   `json:"is_bot"`
	FirstName string `json:"first_name"`
	Username  string `json:"username,omitempty"`
}

// Chat is a Telegram chat. Private chats have the user's id; groups a
// negative one.
type Chat struct {
	ID    int64  `json:"id"`
	Type  string `json:"type"` // private, group, supergroup
	Title string `json:"title,omitempty"`
}

// Group makes a supergroup chat.
func Group(id int64, title string) Chat { return Chat{ID: id, Type: "supergroup", Title: title} }

// Private makes the private chat of a user.
func Private(u User) Chat { return Chat{ID: u.ID, Type: "private"} }

// File is an uploaded file.
type File struct {
	Name string
	Data []byte
}

// Call is one request the fake received.
type Call struct {
	Method      string
	Fields      map[string]string
	Files       map[string]File
	At          time.Time
	Code        int    // HTTP status answered
	Description string // error description answered, if any
	MessageID   int    // the message sent or edited, on success
}

// OK reports whether the call succeeded.
func (c Call) OK() bool { return c.Code == http.StatusOK }

// Int reads a numeric field.
func (c Call) Int(field string) int64 {
	n, _ := strconv.ParseInt(c.Fields[field], 10, 64)
	return n
}

// Message is a message as the chat shows it.
type Message struct {
	Chat      int64
	ID        int
	Kind      string // text, photo or document
	Text      string // as sent (HTML source when ParseMode is HTML); the caption for media
	Visible   string // what the user reads
	ParseMode string
	Markup    string // canonical reply_markup JSON, "" for none
	ReplyTo   int
	File      File
	Edits     int
	Invoice   *Invoice // Kind "invoice"
}

// Invoice is a sent invoice as the chat shows it.
type Invoice struct {
	Title, Description, Payload, Currency, ProviderToken string
	Total                                                int // sum of the prices, in the currency's smallest unit
}

// CheckoutAnswer is the bot's answer to a pre_checkout_query.
type CheckoutAnswer struct {
	Answered bool
	OK       bool
	Error    string
	After    time.Duration // from the query's queueing to the answer
}

type charge struct {
	user     int64
	refunded bool
}

// Buttons lists the message's inline keyboard.
func (m Message) Buttons() []Button {
	if m.Markup == "" {
		return nil
	}
	var kb struct {
		InlineKeyboard [][]Button `json:"inline_keyboard"`
	}
	_ = json.Unmarshal([]byte(m.Markup), &kb)
	var out []Button
	for _, row := range kb.InlineKeyboard {
		out = append(out, row...)
	}
	return out
}

// Button is an inline keyboard button.
type Button struct {
	Text         string `json:"text"`
	CallbackData string `json:"callback_data,omitempty"`
	URL          string `json:"url,omitempty"`
	Style        string `json:"style,omitempty"`
}

// Answer is a scripted reply to the next call of a method.
type Answer struct {
	Code        int
	Description string
	RetryAfter  int
}

// TooMany is a 429 asking to wait seconds.
func TooMany(seconds int) Answer {
	return Answer{Code: 429, Description: fmt.Sprintf("Too Many Requests: retry after %d", seconds), RetryAfter: seconds}
}

// Limits are rate limits the fake enforces on calls that post or edit
// messages, with 429 and retry_after as Telegram answers. Telegram documents
// the rates (about 1 message a second per chat, 20 a minute per group, about
// 30 a second overall) but not how bursts are counted: ChatBurst and the
// sliding minute are this fake's model.
type Limits struct {
	PerChat        rate.Limit
	ChatBurst      int
	GroupPerMinute int // in any sliding 60 s window, for chats with a negative id
	Global         rate.Limit
	GlobalBurst    int
}

// TelegramLimits is the fake's model of Telegram's limits.
var TelegramLimits = Limits{PerChat: 1, ChatBurst: 3, GroupPerMinute: 20, Global: 30, GlobalBurst: 30}

type msgKey struct {
	chat int64
	id   int
}

type update struct {
	id  int64
	raw json.RawMessage
}

// Server is the fake Bot API.
type Server struct {
	*httptest.Server

	mu        sync.Mutex
	changed   chan struct{}
	calls     []Call
	updates   []update
	nextUpd   int64
	nextMsg   map[int64]int
	nextQuery int
	queries   map[string]bool // issued callback query ids -> answered
	messages  map[msgKey]*Message
	script    map[string][]Answer
	webhook   string
	secret    string
	commands  string
	blockedDM map[int64]bool
	checkouts map[string]*CheckoutAnswer
	queuedAt  map[string]time.Time
	charges   map[string]*charge
	nextPay   int

	limits    *Limits
	chatLim   map[int64]*rate.Limiter
	groupSent map[int64][]time.Time
	globalLim *rate.Limiter
	tooMany   int
}

// New starts a fake; it is closed when the test ends.
func New(t testing.TB) *Server {
	s := &Server{changed: make(chan struct{}), nextMsg: map[int64]int{}, queries: map[string]bool{},
		messages: map[msgKey]*Message{}, script: map[string][]Answer{}, blockedDM: map[int64]bool{},
		checkouts: map[string]*CheckoutAnswer{}, queuedAt: map[string]time.Time{}, charges: map[string]*charge{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// SetLimits makes the fake enforce rate limits (nil turns them off).
func (s *Server) SetLimits(l *Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = l
	s.chatLim, s.groupSent = map[int64]*rate.Limiter{}, map[int64][]time.Time{}
	if l != nil {
		s.globalLim = rate.NewLimiter(l.Global, l.GlobalBurst)
	}
}

// Script queues answers for the next calls of method, before any other check.
func (s *Server) Script(method string, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script[method] = append(s.script[method], answers...)
}

// BlockDM makes sending to a user's private chat fail as it does when the
// user never started the bot.
func (s *Server) BlockDM(userID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blockedDM[userID] = true
}

// Forget deletes a message, as a user deleting it would.
func (s *Server) Forget(chat int64, id int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.messages, msgKey{chat, id})
}

// Webhook is the webhook URL and secret set with setWebhook.
func (s *Server) Webhook() (url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.webhook, s.secret
}

// Commands is the JSON command list set with setMyCommands.
func (s *Server) Commands() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands
}

// TooManyAnswered counts 429s the fake's limits produced (scripted ones excluded).
func (s *Server) TooManyAnswered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tooMany
}

// Calls returns the calls of method ("" for all), in order.
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Message returns a message of a chat.
func (s *Server) Message(chat int64, id int) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.messages[msgKey{chat, id}]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// Messages returns a chat's messages in order.
func (s *Server) Messages(chat int64) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for k, m := range s.messages {
		if k.chat == chat {
			out = append(out, *m)
		}
	}
	slices.SortFunc(out, func(a, b Message) int { return a.ID - b.ID })
	return out
}

// Wait blocks until cond holds (it is checked under no lock after every
// change), failing the test after timeout.
func (s *Server) Wait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
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
			t.Fatalf("telegramtest: timed out after %s waiting for %s", timeout, what)
		}
	}
}

// WaitCall waits for a call of method that match accepts (nil: any) and returns it.
func (s *Server) WaitCall(t testing.TB, timeout time.Duration, method string, match func(Call) bool) Call {
	t.Helper()
	var found Call
	s.Wait(t, timeout, "a "+method+" call", func() bool {
		for _, c := range s.Calls(method) {
			if match == nil || match(c) {
				found = c
				return true
			}
		}
		return false
	})
	return found
}

// WaitAnswer waits for the answer to a callback query.
func (s *Server) WaitAnswer(t testing.TB, queryID string) Call {
	t.Helper()
	return s.WaitCall(t, 30*time.Second, "answerCallbackQuery", func(c Call) bool { return c.Fields["callback_query_id"] == queryID })
}

func (s *Server) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// MessageUpdate builds the update of a user's text message (the message is
// stored in the chat) without queueing it; for webhook tests.
func (s *Server) MessageUpdate(chat Chat, from User, text string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messageUpdate(chat, from, text)
}

func (s *Server) messageUpdate(chat Chat, from User, text string) json.RawMessage {
	id := s.store(&Message{Chat: chat.ID, Kind: "text", Text: text, Visible: text})
	s.nextUpd++
	msg := map[string]any{"message_id": id, "date": time.Now().Unix(), "chat": chat, "from": from, "text": text}
	if strings.HasPrefix(text, "/") {
		cmd, _, _ := strings.Cut(text, " ")
		msg["entities"] = []map[string]any{{"type": "bot_command", "offset": 0, "length": Len(cmd)}}
	}
	raw, _ := json.Marshal(map[string]any{"update_id": s.nextUpd, "message": msg})
	return raw
}

// SendText queues a user's text message and returns its message id.
func (s *Server) SendText(chat Chat, from User, text string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw := s.messageUpdate(chat, from, text)
	s.updates = append(s.updates, update{s.nextUpd, raw})
	s.signal()
	return s.nextMsg[chat.ID]
}

// CallbackUpdate builds the update of a button press on message msgID
// without queueing it, and returns it with the callback query id. With old
// set the message comes as an InaccessibleMessage (date 0), as Telegram sends
// it for messages it no longer serves.
func (s *Server) CallbackUpdate(chat Chat, from User, msgID int, data string, old bool) (json.RawMessage, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callbackUpdate(chat, from, msgID, data, old)
}

func (s *Server) callbackUpdate(chat Chat, from User, msgID int, data string, old bool) (json.RawMessage, string) {
	s.nextQuery++
	qid := fmt.Sprintf("cq%d", s.nextQuery)
	s.queries[qid] = false
	msg := map[string]any{"message_id": msgID, "date": 0, "chat": chat}
	if m, ok := s.messages[msgKey{chat.ID, msgID}]; ok && !old {
		msg = map[string]any{"message_id": msgID, "date": time.Now().Unix(), "chat": chat, "from": BotUser, "text": m.Visible}
		if m.Markup != "" {
			msg["reply_markup"] = json.RawMessage(m.Markup)
		}
	}
	s.nextUpd++
	raw, _ := json.Marshal(map[string]any{"update_id": s.nextUpd, "callback_query": map[string]any{
		"id": qid, "from": from, "message": msg, "chat_instance": "ci" + strconv.FormatInt(chat.ID, 10), "data": data}})
	return raw, qid
}

// Press queues a button press and returns the callback query id.
func (s *Server) Press(chat Chat, from User, msgID int, data string) string {
	return s.press(chat, from, msgID, data, false)
}

// PressOld queues a press on a message Telegram no longer serves.
func (s *Server) PressOld(chat Chat, from User, msgID int, data string) string {
	return s.press(chat, from, msgID, data, true)
}

func (s *Server) press(chat Chat, from User, msgID int, data string, old bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, qid := s.callbackUpdate(chat, from, msgID, data, old)
	s.updates = append(s.updates, update{s.nextUpd, raw})
	s.signal()
	return qid
}

// Queue queues a raw update (its update_id is assigned; a callback query's
// id becomes one the fake expects an answer to).
func (s *Server) Queue(fields map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q, ok := fields["callback_query"].(map[string]any); ok {
		if id, ok := q["id"].(string); ok {
			s.queries[id] = false
		}
	}
	s.nextUpd++
	fields["update_id"] = s.nextUpd
	raw, _ := json.Marshal(fields)
	s.updates = append(s.updates, update{s.nextUpd, raw})
	s.signal()
}

func (s *Server) store(m *Message) int {
	s.nextMsg[m.Chat]++
	m.ID = s.nextMsg[m.Chat]
	s.messages[msgKey{m.Chat, m.ID}] = m
	return m.ID
}

var methodRE = regexp.MustCompile(`^/bot([^/]+)/([A-Za-z]+)$`)

type apiError struct {
	code int
	desc string
	wait int
}

func bad(format string, args ...any) *apiError {
	return &apiError{code: 400, desc: "Bad Request: " + fmt.Sprintf(format, args...)}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	m := methodRE.FindStringSubmatch(r.URL.Path)
	if m == nil || r.Method != http.MethodPost && r.Method != http.MethodGet {
		writeJSON(w, 404, map[string]any{"ok": false, "error_code": 404, "description": "Not Found"})
		return
	}
	token, method := m[1], m[2]
	call := Call{Method: method, At: time.Now(), Fields: map[string]string{}, Files: map[string]File{}}
	if token != Token {
		call.Method = "unauthorized:" + method
		s.finish(w, &call, nil, &apiError{code: 401, desc: "Unauthorized"})
		return
	}
	if err := parseRequest(r, &call); err != nil {
		s.finish(w, &call, nil, bad("%v", err))
		return
	}
	if method == "getUpdates" {
		s.getUpdates(w, r, &call)
		return
	}
	s.mu.Lock()
	var (
		result any
		aerr   *apiError
	)
	if script := s.script[method]; len(script) > 0 {
		a := script[0]
		s.script[method] = script[1:]
		aerr = &apiError{code: a.Code, desc: a.Description, wait: a.RetryAfter}
	} else {
		result, aerr = s.handle(&call)
	}
	s.mu.Unlock()
	s.finish(w, &call, result, aerr)
}

func (s *Server) finish(w http.ResponseWriter, call *Call, result any, aerr *apiError) {
	s.mu.Lock()
	if aerr != nil {
		call.Code, call.Description = aerr.code, aerr.desc
	} else {
		call.Code = 200
	}
	s.calls = append(s.calls, *call)
	s.signal()
	s.mu.Unlock()
	if aerr != nil {
		body := map[string]any{"ok": false, "error_code": aerr.code, "description": aerr.desc}
		if aerr.wait > 0 {
			body["parameters"] = map[string]any{"retry_after": aerr.wait}
		}
		writeJSON(w, aerr.code, body)
		return
	}
	writeJSON(w, 200, map[string]any{"ok": true, "result": result})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// parseRequest reads the parameters as the Bot API accepts them.
func parseRequest(r *http.Request, call *Call) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return nil // a method without parameters (go-telegram/bot sends an empty multipart body)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	switch ct {
	case "multipart/form-data":
		if err := r.ParseMultipartForm(32 << 20); err != nil {
			return fmt.Errorf("bad multipart body: %v", err)
		}
		for k, v := range r.MultipartForm.Value {
			call.Fields[k] = v[0]
		}
		for k, fhs := range r.MultipartForm.File {
			f, err := fhs[0].Open()
			if err != nil {
				return err
			}
			data, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return err
			}
			call.Files[k] = File{Name: fhs[0].Filename, Data: data}
		}
	case "application/x-www-form-urlencoded", "":
		if err := r.ParseForm(); err != nil {
			return err
		}
		for k, v := range r.Form {
			call.Fields[k] = v[0]
		}
	case "application/json":
		var m map[string]json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			var s string
			if json.Unmarshal(v, &s) == nil {
				call.Fields[k] = s
			} else {
				call.Fields[k] = string(v)
			}
		}
	default:
		return fmt.Errorf("unsupported content type %q", ct)
	}
	return nil
}

func (s *Server) getUpdates(w http.ResponseWriter, r *http.Request, call *Call) {
	offset := call.Int("offset")
	timeout := time.Duration(call.Int("timeout")) * time.Second
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if s.webhook != "" {
			s.mu.Unlock()
			s.finish(w, call, nil, &apiError{code: 409, desc: "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"})
			return
		}
		s.updates = slices.DeleteFunc(s.updates, func(u update) bool { return u.id < offset })
		var out []json.RawMessage
		for _, u := range s.updates {
			out = append(out, u.raw)
		}
		ch := s.changed
		s.mu.Unlock()
		if len(out) > 0 || timeout == 0 {
			if out == nil {
				out = []json.RawMessage{}
			}
			s.finish(w, call, out, nil)
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			timeout = 0
		case <-r.Context().Done():
			return
		}
	}
}

// limited applies the rate limits to a message call in chat.
func (s *Server) limited(chat int64) *apiError {
	if s.limits == nil {
		return nil
	}
	now := time.Now()
	l := s.chatLim[chat]
	if l == nil {
		l = rate.NewLimiter(s.limits.PerChat, s.limits.ChatBurst)
		s.chatLim[chat] = l
	}
	var wait time.Duration
	if tok := l.TokensAt(now); tok < 1 {
		wait = max(wait, time.Duration((1-tok)/float64(s.limits.PerChat)*float64(time.Second)))
	}
	if tok := s.globalLim.TokensAt(now); tok < 1 {
		wait = max(wait, time.Duration((1-tok)/float64(s.limits.Global)*float64(time.Second)))
	}
	var window []time.Time
	if chat < 0 && s.limits.GroupPerMinute > 0 {
		for _, t := range s.groupSent[chat] {
			if now.Sub(t) < time.Minute {
				window = append(window, t)
			}
		}
		s.groupSent[chat] = window
		if len(window) >= s.limits.GroupPerMinute {
			wait = max(wait, window[len(window)-s.limits.GroupPerMinute].Add(time.Minute).Sub(now))
		}
	}
	if wait > 0 {
		s.tooMany++
		secs := int(math.Ceil(wait.Seconds()))
		return &apiError{code: 429, desc: fmt.Sprintf("Too Many Requests: retry after %d", secs), wait: secs}
	}
	l.AllowN(now, 1)
	s.globalLim.AllowN(now, 1)
	if chat < 0 {
		s.groupSent[chat] = append(s.groupSent[chat], now)
	}
	return nil
}

var (
	secretRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)
	commandRE = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)
)

// handle runs one method under s.mu.
func (s *Server) handle(c *Call) (any, *apiError) {
	f := c.Fields
	switch c.Method {
	case "getMe":
		return BotUser, nil
	case "setMyCommands":
		var cmds []struct{ Command, Description string }
		if err := json.Unmarshal([]byte(f["commands"]), &cmds); err != nil {
			return nil, bad("can't parse commands JSON object")
		}
		for _, cmd := range cmds {
			if !commandRE.MatchString(cmd.Command) || cmd.Description == "" || Len(cmd.Description) > 256 {
				return nil, bad("BOT_COMMAND_INVALID")
			}
		}
		s.commands = f["commands"]
		return true, nil
	case "setWebhook":
		u, err := url.Parse(f["url"])
		if err != nil || u.Host == "" {
			return nil, bad("bad webhook: invalid URL")
		}
		if sec := f["secret_token"]; sec != "" && !secretRE.MatchString(sec) {
			return nil, bad("bad webhook: secret token contains unallowed characters")
		}
		s.webhook, s.secret = f["url"], f["secret_token"]
		return true, nil
	case "deleteWebhook":
		s.webhook, s.secret = "", ""
		return true, nil
	case "answerCallbackQuery":
		answered, ok := s.queries[f["callback_query_id"]]
		if !ok || answered {
			return nil, bad("query is too old and response timeout expired or query ID is invalid")
		}
		if Len(f["text"]) > 200 {
			return nil, bad("MESSAGE_TOO_LONG")
		}
		s.queries[f["callback_query_id"]] = true
		return true, nil
	case "sendMessage", "editMessageText", "sendPhoto", "sendDocument":
		return s.message(c)
	case "sendInvoice":
		return s.invoice(c)
	case "answerPreCheckoutQuery":
		a, ok := s.checkouts[f["pre_checkout_query_id"]]
		if !ok || a.Answered {
			return nil, bad("QUERY_ID_INVALID")
		}
		ok = f["ok"] == "true"
		if !ok && f["error_message"] == "" {
			return nil, bad("error_message is required when ok is false")
		}
		a.Answered, a.OK, a.Error = true, ok, f["error_message"]
		a.After = time.Since(s.queuedAt[f["pre_checkout_query_id"]])
		return true, nil
	case "refundStarPayment":
		ch, ok := s.charges[f["telegram_payment_charge_id"]]
		switch {
		case !ok || strconv.FormatInt(ch.user, 10) != f["user_id"]:
			return nil, bad("CHARGE_NOT_FOUND")
		case ch.refunded:
			return nil, bad("CHARGE_ALREADY_REFUNDED")
		}
		ch.refunded = true
		return true, nil
	}
	return nil, &apiError{code: 404, desc: "Not Found: method not found"}
}

func (s *Server) message(c *Call) (any, *apiError) {
	f := c.Fields
	chat, err := strconv.ParseInt(f["chat_id"], 10, 64)
	if err != nil {
		return nil, bad("chat not found")
	}
	if chat > 0 && s.blockedDM[chat] {
		return nil, &apiError{code: 403, desc: "Forbidden: bot can't initiate conversation with a user"}
	}
	text, textField := f["text"], "text"
	if c.Method == "sendPhoto" || c.Method == "sendDocument" {
		text, textField = f["caption"], "caption"
	}
	visible := text
	if f["parse_mode"] == "HTML" {
		if visible, err = ParseHTML(text); err != nil {
			return nil, bad("%v", err)
		}
	} else if f["parse_mode"] != "" {
		return nil, bad("unsupported parse_mode %q in this fake", f["parse_mode"])
	}
	switch {
	case textField == "text" && strings.TrimSpace(visible) == "":
		return nil, bad("message text is empty")
	case textField == "text" && Len(visible) > 4096:
		return nil, bad("message is too long")
	case textField == "caption" && Len(visible) > 1024:
		return nil, bad("message caption is too long")
	}
	markup, aerr := checkMarkup(f["reply_markup"])
	if aerr != nil {
		return nil, aerr
	}
	var replyTo int
	if rp := f["reply_parameters"]; rp != "" {
		var p struct {
			MessageID int  `json:"message_id"`
			Allow     bool `json:"allow_sending_without_reply"`
		}
		if err := json.Unmarshal([]byte(rp), &p); err != nil {
			return nil, bad("can't parse reply parameters JSON object")
		}
		if _, ok := s.messages[msgKey{chat, p.MessageID}]; ok {
			replyTo = p.MessageID
		} else if !p.Allow {
			return nil, bad("message to be replied not found")
		}
	}
	if c.Method == "editMessageText" {
		id, _ := strconv.Atoi(f["message_id"])
		m, ok := s.messages[msgKey{chat, id}]
		if !ok {
			return nil, bad("message to edit not found")
		}
		if m.Kind != "text" {
			return nil, bad("there is no text in the message to edit")
		}
		if m.Text == text && m.ParseMode == f["parse_mode"] && m.Markup == markup {
			return nil, &apiError{code: 400, desc: NotModified}
		}
		if aerr := s.limited(chat); aerr != nil {
			return nil, aerr
		}
		m.Text, m.Visible, m.ParseMode, m.Markup = text, visible, f["parse_mode"], markup
		m.Edits++
		c.MessageID = m.ID
		return s.result(m), nil
	}
	m := &Message{Chat: chat, Kind: "text", Text: text, Visible: visible, ParseMode: f["parse_mode"], Markup: markup, ReplyTo: replyTo}
	switch c.Method {
	case "sendPhoto":
		m.Kind, m.File = "photo", c.Files["photo"]
		if len(m.File.Data) == 0 {
			return nil, bad("there is no photo in the request")
		}
	case "sendDocument":
		m.Kind, m.File = "document", c.Files["document"]
		if len(m.File.Data) == 0 {
			return nil, bad("there is no document in the request")
		}
	}
	if aerr := s.limited(chat); aerr != nil {
		return nil, aerr
	}
	c.MessageID = s.store(m)
	return s.result(m), nil
}

func (s *Server) result(m *Message) map[string]any {
	out := map[string]any{"message_id": m.ID, "date": time.Now().Unix(), "chat": map[string]any{"id": m.Chat, "type": chatType(m.Chat)},
		"from": BotUser}
	if m.Kind == "text" {
		out["text"] = m.Visible
	} else {
		out["caption"] = m.Visible
	}
	return out
}

func chatType(id int64) string {
	if id < 0 {
		return "supergroup"
	}
	return "private"
}

// actionFields are the fields of which an inline button must use exactly one.
var actionFields = []string{"url", "callback_data", "web_app", "login_url", "switch_inline_query",
	"switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text", "callback_game", "pay"}

// checkMarkup validates an inline keyboard strictly by the documentation and
// returns it in canonical form ("" for none or an empty keyboard).
func checkMarkup(raw string) (string, *apiError) {
	if raw == "" {
		return "", nil
	}
	var kb struct {
		InlineKeyboard [][]map[string]json.RawMessage `json:"inline_keyboard"`
	}
	if err := json.Unmarshal([]byte(raw), &kb); err != nil {
		return "", bad("can't parse reply keyboard markup JSON object")
	}
	n := 0
	for _, row := range kb.InlineKeyboard {
		for _, b := range row {
			n++
			var text string
			if json.Unmarshal(b["text"], &text) != nil || text == "" {
				return "", bad("BUTTON_TEXT_INVALID")
			}
			actions := 0
			for _, a := range actionFields {
				if _, ok := b[a]; ok {
					actions++
				}
			}
			if ct, ok := b["copy_text"]; ok {
				var c struct{ Text string }
				if json.Unmarshal(ct, &c) != nil || c.Text == "" {
					return "", bad("BUTTON_COPY_TEXT_INVALID")
				}
			}
			if actions != 1 {
				return "", bad("can't parse inline keyboard button: exactly one of the optional fields must be used")
			}
			if d, ok := b["callback_data"]; ok {
				var data string
				if json.Unmarshal(d, &data) != nil || len(data) == 0 || len(data) > 64 {
					return "", bad("BUTTON_DATA_INVALID")
				}
			}
			if raw, ok := b["url"]; ok {
				var s string
				_ = json.Unmarshal(raw, &s)
				u, err := url.Parse(s)
				// The real API refuses hosts without a dot, like localhost.
				if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "tg") || (u.Scheme != "tg" && !strings.Contains(u.Hostname(), ".")) {
					return "", bad("BUTTON_URL_INVALID")
				}
			}
		}
	}
	if n == 0 {
		return "", nil
	}
	canon, _ := json.Marshal(kb)
	return string(canon), nil
}

// invoice handles sendInvoice as Telegram documents it: for Stars currency
// XTR, no provider token, exactly one price; any other currency needs a
// payment provider's token.
func (s *Server) invoice(c *Call) (any, *apiError) {
	f := c.Fields
	chat, err := strconv.ParseInt(f["chat_id"], 10, 64)
	if err != nil {
		return nil, bad("chat not found")
	}
	var prices []struct {
		Label  string `json:"label"`
		Amount int    `json:"amount"`
	}
	if err := json.Unmarshal([]byte(f["prices"]), &prices); err != nil || len(prices) == 0 {
		return nil, bad("can't parse prices JSON object")
	}
	inv := &Invoice{Title: f["title"], Description: f["description"], Payload: f["payload"], Currency: f["currency"], ProviderToken: f["provider_token"]}
	for _, p := range prices {
		if p.Label == "" || p.Amount <= 0 {
			return nil, bad("CURRENCY_TOTAL_AMOUNT_INVALID")
		}
		inv.Total += p.Amount
	}
	switch {
	case Len(inv.Title) < 1 || Len(inv.Title) > 32:
		return nil, bad("INVOICE_TITLE_INVALID")
	case Len(inv.Description) < 1 || Len(inv.Description) > 255:
		return nil, bad("INVOICE_DESCRIPTION_INVALID")
	case len(inv.Payload) < 1 || len(inv.Payload) > 128:
		return nil, bad("INVOICE_PAYLOAD_INVALID")
	case inv.Currency == "XTR" && (inv.ProviderToken != "" || len(prices) != 1):
		return nil, bad("a Stars invoice takes no provider token and exactly one price")
	case inv.Currency != "XTR" && inv.ProviderToken == "":
		return nil, bad("PAYMENT_PROVIDER_INVALID")
	case inv.Currency == "":
		return nil, bad("CURRENCY_INVALID")
	}
	if aerr := s.limited(chat); aerr != nil {
		return nil, aerr
	}
	m := &Message{Chat: chat, Kind: "invoice", Text: inv.Title, Visible: inv.Title + "\n" + inv.Description, Invoice: inv}
	if markup, aerr := checkMarkup(f["reply_markup"]); aerr == nil {
		m.Markup = markup
	}
	c.MessageID = s.store(m)
	return s.result(m), nil
}

// PreCheckout queues a pre_checkout_query from a payer who pressed Pay on an
// invoice with this payload and total; it returns the query id.
func (s *Server) PreCheckout(from User, payload, currency string, total int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextQuery++
	qid := fmt.Sprintf("pcq%d", s.nextQuery)
	s.checkouts[qid] = &CheckoutAnswer{}
	s.queuedAt[qid] = time.Now()
	s.nextUpd++
	raw, _ := json.Marshal(map[string]any{"update_id": s.nextUpd, "pre_checkout_query": map[string]any{
		"id": qid, "from": from, "currency": currency, "total_amount": total, "invoice_payload": payload}})
	s.updates = append(s.updates, update{s.nextUpd, raw})
	s.signal()
	return qid
}

// WaitCheckout waits for the bot's answer to a pre_checkout_query (Telegram
// gives it 10 s) and returns it.
func (s *Server) WaitCheckout(t testing.TB, qid string) CheckoutAnswer {
	t.Helper()
	var a CheckoutAnswer
	s.Wait(t, 30*time.Second, "answerPreCheckoutQuery "+qid, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		a = *s.checkouts[qid]
		return a.Answered
	})
	return a
}

// Pay queues the successful_payment message Telegram sends after a payment
// and returns its telegram_payment_charge_id (refundable through the fake).
func (s *Server) Pay(chat Chat, from User, payload, currency string, total int) string {
	s.mu.Lock()
	s.nextPay++
	id := fmt.Sprintf("stxCHARGE%04d", s.nextPay)
	s.mu.Unlock()
	s.Repay(chat, from, payload, currency, total, id)
	return id
}

// Repay queues a successful_payment with a given charge id: a replay of an
// earlier one when the id was used before.
func (s *Server) Repay(chat Chat, from User, payload, currency string, total int, chargeID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.charges[chargeID]; !ok {
		s.charges[chargeID] = &charge{user: from.ID}
	}
	id := s.store(&Message{Chat: chat.ID, Kind: "payment"})
	provider := "" // Stars have no payment provider
	if currency != "XTR" {
		provider = ProviderCharge(chargeID)
	}
	s.nextUpd++
	raw, _ := json.Marshal(map[string]any{"update_id": s.nextUpd, "message": map[string]any{
		"message_id": id, "date": time.Now().Unix(), "chat": chat, "from": from,
		"successful_payment": map[string]any{"currency": currency, "total_amount": total, "invoice_payload": payload,
			"telegram_payment_charge_id": chargeID, "provider_payment_charge_id": provider}}})
	s.updates = append(s.updates, update{s.nextUpd, raw})
	s.signal()
}

// ProviderCharge is the payment provider's charge id the fake reports for a
// payment in a currency other than Stars.
func ProviderCharge(chargeID string) string { return "prov_" + chargeID }

// Refunded reports whether the fake refunded a charge.
func (s *Server) Refunded(chargeID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.charges[chargeID]
	return ok && ch.refunded
}
