// Package telegram is forgebot's Telegram adapter, on go-telegram/bot. It
// only translates: messages and button presses become bots.Incoming for the
// shared conversation, and bots.View becomes Telegram messages, with progress
// as plain text and final reports as HTML in which every character of model
// output is escaped. The Adapter is also the bots.Sender through which the
// outbox edits run messages.
//
// Updates come by long polling, or by webhook when a webhook URL is
// configured: then Mount serves it on our own HTTP server and checks
// Telegram's secret token itself (the library would answer 200 to anyone).
// Long polling allows one instance per bot; several instances need the
// webhook.
//
// Every call that posts or edits a message waits for a per-chat budget that
// models Telegram's limits (see Limits and the constants in budget.go), so
// that bursts of progress coalesce in the outbox instead of drawing 429s.
//
// Choices where Telegram differs from other platforms:
//   - Incoming.Admin is never set: forgebot's admins are configured
//     identities (the engine's), and a group's Telegram admins get no say
//     over other members' runs or money.
//   - Telegram has no message only one member sees. In a group, a private
//     answer (a link code, receipts, usage) goes to the user's private chat;
//     quotes and errors stay in the group.
//   - Anonymous group admins and channels post as a chat, all under one id:
//     their commands are refused rather than billed to a shared identity.
//   - Model output is escaped for HTML and "@name" gets a word joiner, so
//     that no report can mention (and notify) anyone.
package telegram

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// Platform is Telegram's name in identities and destinations.
const Platform = "telegram"

// DefaultAPIURL is Telegram's Bot API.
const DefaultAPIURL = "https://api.telegram.org"

// DefaultWebhookPath is where Mount serves the webhook when the webhook URL
// has no path of its own.
const DefaultWebhookPath = "/telegram/webhook"

// Config configures an Adapter.
type Config struct {
	Token string
	// APIURL is the Bot API server: "" for Telegram's, or a self-hosted
	// telegram-bot-api server (and tests' fakes).
	APIURL string
	// WebhookURL turns webhook mode on: Telegram posts updates there, and
	// Mount serves its path. "" means long polling.
	WebhookURL string
	// WebhookSecret is the secret Telegram sends with every webhook call
	// (1-256 of A-Z a-z 0-9 _ -); required with WebhookURL.
	WebhookSecret string
	// HTTPClient makes the Bot API calls; its Timeout must exceed
	// PollTimeout. nil = a client with PollTimeout + 15s.
	HTTPClient *http.Client
	Log        *slog.Logger
	// PollTimeout is how long one getUpdates call waits; default 50s.
	PollTimeout time.Duration
	// AnswerWithin bounds how long a button press may wait for the
	// conversation before its callback query is answered empty (the client
	// spins until answered); a refusal that comes later is posted in the
	// chat instead. Default 2s.
	AnswerWithin time.Duration
	// PaymentProviderToken is a payment provider's token from @BotFather
	// (TELEGRAM_PAYMENT_PROVIDER_TOKEN): invoices in a currency other than
	// Stars go through it. Kept out of logs like the bot token.
	PaymentProviderToken string
	// PaymentRetry is the first wait before crediting a successful_payment
	// again after a failure (doubling each time); default 1s.
	PaymentRetry time.Duration
	// RetryMin and RetryMax bound the backoff between attempts to register
	// the webhook while the Bot API is unreachable: default 1 s doubling to
	// 1 min, with jitter.
	RetryMin, RetryMax time.Duration
	// Workers bounds the updates handled at once (default 32). Polling
	// waits for a free worker; a webhook call finding none answers 503, and
	// Telegram delivers the update again later.
	Workers int
	// WebhookWait is how long a webhook call waits for its update to be
	// handled before answering 200 anyway (default 10 s): an update whose
	// every reply failed to go out within it answers 503, so Telegram
	// delivers it again.
	WebhookWait time.Duration
	// Rates, when set, holds the chat budget in the database every instance
	// of this bot shares (store/postgres), so that instances together stay
	// within Telegram's per-chat, per-group and global limits; nil keeps
	// it in this process (one instance, or SQLite).
	Rates bots.RateStore
}

// String describes the configuration without its secrets.
func (c Config) String() string {
	mode := "polling"
	if c.WebhookURL != "" {
		mode = "webhook " + c.WebhookURL
	}
	api := c.APIURL
	if api == "" {
		api = DefaultAPIURL
	}
	return fmt.Sprintf("telegram.Config{api: %s, %s, token and secret redacted}", api, mode)
}

// LogValue keeps the token and the webhook secret out of logs.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

var (
	tokenRE  = regexp.MustCompile(`^[0-9]+:[A-Za-z0-9_-]+$`)
	secretRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)
)

// Validate checks the configuration without the network. Its errors never
// contain the token.
func (c Config) Validate() error {
	if !tokenRE.MatchString(c.Token) {
		return errors.New("the bot token does not look like one from @BotFather (digits:letters)")
	}
	if c.APIURL != "" {
		u, err := url.Parse(c.APIURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("the Bot API URL must be an http(s) URL, got %q", c.APIURL)
		}
	}
	if c.WebhookURL == "" {
		return nil
	}
	u, err := url.Parse(c.WebhookURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("the webhook URL must be an https URL, got %q", c.WebhookURL)
	}
	if u.Scheme == "http" && c.APIURL == "" {
		return errors.New("Telegram only posts webhooks to https URLs (http works with a self-hosted Bot API server)")
	}
	if !secretRE.MatchString(c.WebhookSecret) {
		return errors.New("the webhook secret must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
	}
	return nil
}

// Conversation is what the adapter needs of *bots.Conversation.
type Conversation interface {
	Handle(ctx context.Context, in bots.Incoming) []bots.Reply
	MoveRun(ctx context.Context, runID string, who billing.Identity, d research.Destination) error
	// EditRun makes an edit of a run's message under the outbox's per-run
	// order (bots.Conversation.EditRun).
	EditRun(ctx context.Context, d research.Destination, runID string, version int64, edit func(context.Context) error) (bool, error)
}

var (
	_ Conversation = (*bots.Conversation)(nil)
	_ bots.Sender  = (*Adapter)(nil)
)

// Adapter is the Telegram front end of one bot.
type Adapter struct {
	cfg         Config
	conv        Conversation
	bot         *bot.Bot
	log         *slog.Logger
	redact      redactor
	webhookPath string
	budget      *budget
	username    atomic.Pointer[string] // the bot's, learned at Start

	msgLocks [64]sync.Mutex // serialise edits of one message (handler vs outbox)

	mu        sync.Mutex
	pollCtx   context.Context // polling; set by Start, cancelled first on Stop
	stopPoll  context.CancelFunc
	workCtx   context.Context // handlers and attachments; cancelled when Stop gives up waiting
	stopWork  context.CancelFunc
	stopping  bool
	polling   chan struct{}       // closed when the polling loop has returned
	parts     map[int64][]partJob // attachments of final messages, per chat
	partsBusy int
	partsIdle chan struct{}         // closed while no attachment is pending
	finalized map[msgKey]time.Time  // messages showing a final view: no more edits
	shown     map[msgKey]shownEntry // what messages show, to skip edits that change nothing
	recent    [256]int64            // update ids seen lately, against webhook redelivery
	recentN   int

	inflight sync.WaitGroup

	// health: when a Bot API call last got an answer, and when one last
	// failed to (no connection, or 5xx); unix nanoseconds.
	lastOK, lastFail atomic.Int64
	// webhookSet is false while the webhook still has to be registered.
	webhookSet atomic.Bool
	// workers holds one token per update being handled.
	workers chan struct{}
}

// updateInfo follows one update's handling: whether a reply went out, and
// whether one failed to.
type updateInfo struct {
	id           int64
	sent, failed atomic.Bool
	done         chan struct{}
}

type updateKey struct{}

func updateOf(ctx context.Context) *updateInfo {
	u, _ := ctx.Value(updateKey{}).(*updateInfo)
	return u
}

type msgKey struct {
	chat int64
	id   int
}

// New builds an adapter; it makes no network call.
func New(cfg Config, conv Conversation) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("telegram: %w", err)
	}
	if conv == nil {
		return nil, errors.New("telegram: no conversation")
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 50 * time.Second
	}
	if cfg.PollTimeout < 2*time.Second {
		cfg.PollTimeout = 2 * time.Second // getUpdates waits PollTimeout-1s, in whole seconds
	}
	if cfg.AnswerWithin <= 0 {
		cfg.AnswerWithin = 2 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: cfg.PollTimeout + 15*time.Second}
	}
	// Every Bot API call passes the health recorder (a copy: the caller's
	// client is left as it is).
	hc := *cfg.HTTPClient
	hc.Transport = &healthTransport{next: cmp.Or[http.RoundTripper](hc.Transport, http.DefaultTransport)}
	cfg.HTTPClient = &hc
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &Adapter{cfg: cfg, conv: conv, log: cfg.Log, redact: newRedactor(cfg.Token, cfg.PaymentProviderToken), budget: newSharedBudget(cfg.Rates, botID(cfg.Token), cfg.Log),
		parts: map[int64][]partJob{}, partsIdle: closed(), finalized: map[msgKey]time.Time{}, shown: map[msgKey]shownEntry{}, webhookPath: DefaultWebhookPath}
	hc.Transport.(*healthTransport).a = a
	a.workers = make(chan struct{}, cmp.Or(cfg.Workers, 32))
	if a.cfg.WebhookWait <= 0 {
		a.cfg.WebhookWait = 10 * time.Second
	}
	if cfg.WebhookURL != "" {
		if u, _ := url.Parse(cfg.WebhookURL); u.Path != "" && u.Path != "/" {
			a.webhookPath = u.Path
		}
	}
	opts := []bot.Option{
		bot.WithSkipGetMe(), // Start calls it, with a context
		bot.WithHTTPClient(cfg.PollTimeout, cfg.HTTPClient),
		bot.WithDefaultHandler(func(_ context.Context, _ *bot.Bot, upd *models.Update) { a.dispatch(upd, true) }),
		// dispatch only starts a goroutine; running it synchronously lets
		// Stop know that no update is handed over after polling ended.
		bot.WithNotAsyncHandlers(),
		bot.WithErrorsHandler(func(err error) {
			a.log.Warn("telegram: bot api", "err", a.redact.String(err.Error()))
		}),
		bot.WithAllowedUpdates(bot.AllowedUpdates{models.AllowedUpdateMessage, models.AllowedUpdateCallbackQuery, models.AllowedUpdatePreCheckoutQuery}),
	}
	if cfg.APIURL != "" {
		opts = append(opts, bot.WithServerURL(strings.TrimRight(cfg.APIURL, "/")))
	}
	b, err := bot.New(cfg.Token, opts...)
	if err != nil {
		return nil, fmt.Errorf("telegram: %s", a.redact.String(err.Error()))
	}
	a.bot = b
	a.workCtx, a.stopWork = context.WithCancel(context.Background())
	return a, nil
}

// Mode is "webhook" or "polling".
func (a *Adapter) Mode() string {
	if a.cfg.WebhookURL != "" {
		return "webhook"
	}
	return "polling"
}

// WebhookPath is the path Mount serves.
func (a *Adapter) WebhookPath() string { return a.webhookPath }

// Start learns the bot's name, publishes the command list, then starts long
// polling, or registers the webhook. It returns once updates flow; they stop
// with Stop or when ctx ends. A refused token is ErrBadToken.
func (a *Adapter) Start(ctx context.Context) error {
	a.mu.Lock()
	if a.pollCtx != nil || a.stopping {
		a.mu.Unlock()
		return errors.New("telegram: already started")
	}
	a.pollCtx, a.stopPoll = context.WithCancel(context.WithoutCancel(ctx))
	a.mu.Unlock()

	callCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	me, err := a.bot.GetMe(callCtx)
	switch err := a.redact.classify("getMe", err); {
	case err == nil:
		a.username.Store(&me.Username)
	case errors.Is(err, bot.ErrorUnauthorized), errors.Is(err, bot.ErrorNotFound):
		a.Stop(context.Background())
		return ErrBadToken
	default:
		// Commands for other bots in groups cannot be told apart without
		// our name; everything else works.
		a.log.Warn("telegram: getMe failed; continuing", "err", err)
	}
	a.publishCommands(callCtx)

	if a.cfg.WebhookURL != "" {
		switch err := a.setWebhook(callCtx); {
		case err == nil:
		case errors.Is(err, bot.ErrorUnauthorized), errors.Is(err, bot.ErrorNotFound):
			a.Stop(context.Background())
			return ErrBadToken
		default:
			// The Bot API being down must not take the rest of forgebot
			// with it: the webhook path is mounted and serves; registering
			// it is retried with backoff until it works.
			a.log.Warn("telegram: set webhook failed; retrying with backoff", "err", err)
			go a.retry(a.pollCtx, "setWebhook", func(ctx context.Context) error {
				if err := a.setWebhook(ctx); err != nil {
					return err
				}
				a.publishCommands(ctx)
				return nil
			})
		}
	} else {
		// A webhook left set makes getUpdates fail with a conflict.
		if _, err := a.bot.DeleteWebhook(callCtx, &bot.DeleteWebhookParams{}); err != nil {
			a.log.Warn("telegram: delete webhook", "err", a.redact.classify("deleteWebhook", err))
		}
		done := make(chan struct{})
		a.mu.Lock()
		a.polling = done
		pollCtx := a.pollCtx
		a.mu.Unlock()
		go func() {
			defer close(done)
			a.bot.Start(pollCtx)
		}()
	}
	go func() {
		select {
		case <-ctx.Done():
			stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a.Stop(stop)
		case <-a.pollCtx.Done():
		}
	}()
	a.log.Info("telegram: started", "mode", a.Mode(), "bot", a.botName())
	return nil
}

// setWebhook registers the webhook with its secret.
func (a *Adapter) setWebhook(ctx context.Context) error {
	_, err := a.bot.SetWebhook(ctx, &bot.SetWebhookParams{URL: a.cfg.WebhookURL, SecretToken: a.cfg.WebhookSecret,
		AllowedUpdates: []string{models.AllowedUpdateMessage, models.AllowedUpdateCallbackQuery, models.AllowedUpdatePreCheckoutQuery}})
	if err != nil {
		return a.redact.classify("setWebhook", err)
	}
	a.webhookSet.Store(true)
	return nil
}

// retry repeats fn with jittered exponential backoff (RetryMin doubling to
// RetryMax) until it succeeds or ctx ends, logging each failure.
func (a *Adapter) retry(ctx context.Context, what string, fn func(context.Context) error) {
	wait := cmp.Or(a.cfg.RetryMin, time.Second)
	maxWait := cmp.Or(a.cfg.RetryMax, time.Minute)
	for attempt := 2; ; attempt++ {
		t := time.NewTimer(wait/2 + mrand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := fn(callCtx)
		cancel()
		if err == nil {
			a.log.Info("telegram: "+what+" succeeded after retrying", "attempt", attempt)
			return
		}
		wait = min(2*wait, maxWait)
		a.log.Warn("telegram: "+what+" failed again; retrying", "attempt", attempt, "next_in", wait.String(), "err", err)
	}
}

// State is the adapter's health for /healthz: "up" while the Bot API
// answers (and, in webhook mode, the webhook is registered), else what is
// wrong.
func (a *Adapter) State() string {
	switch {
	case a.cfg.WebhookURL != "" && !a.webhookSet.Load():
		return "connecting: registering the webhook"
	case a.lastFail.Load() > a.lastOK.Load():
		return "degraded: Bot API unreachable"
	}
	return "up"
}

// healthTransport records whether Bot API calls get answers.
type healthTransport struct {
	next http.RoundTripper
	a    *Adapter
}

func (h *healthTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := h.next.RoundTrip(r)
	now := time.Now().UnixNano()
	switch {
	case err != nil && r.Context().Err() != nil: // our own cancel says nothing of the API
	case err != nil || res.StatusCode >= 500:
		h.a.lastFail.Store(now)
	default:
		h.a.lastOK.Store(now)
	}
	return res, err
}

func (a *Adapter) botName() string {
	if p := a.username.Load(); p != nil {
		return *p
	}
	return ""
}

// publishCommands sets the command list clients show; a failure only costs
// the list.
func (a *Adapter) publishCommands(ctx context.Context) {
	var cmds []models.BotCommand
	for _, c := range bots.Commands {
		desc := c.Help
		if c.Args != "" {
			desc += " (" + c.Args + ")"
		}
		cmds = append(cmds, models.BotCommand{Command: c.Name, Description: truncate(desc, 256)})
	}
	if _, err := a.bot.SetMyCommands(ctx, &bot.SetMyCommandsParams{Commands: cmds}); err != nil {
		a.log.Warn("telegram: setMyCommands failed; clients will not list the commands", "err", a.redact.classify("setMyCommands", err))
	}
}

// Stop ends polling, refuses further webhook calls, and waits for updates
// being handled and attachments being sent until ctx ends, then cancels them.
// It leaves a webhook set: another instance may be serving it.
func (a *Adapter) Stop(ctx context.Context) error {
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		return nil
	}
	a.stopping = true
	if a.stopPoll != nil {
		a.stopPoll()
	}
	polling := a.polling
	a.mu.Unlock()
	if polling != nil {
		select {
		case <-polling:
		case <-ctx.Done():
		}
	}
	done := make(chan struct{})
	go func() {
		a.inflight.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("telegram: stop: %w", ctx.Err())
	}
	a.stopWork()
	return err
}

// Mount serves the webhook at WebhookPath on mux (POST only). In polling mode
// it mounts nothing.
func (a *Adapter) Mount(mux *http.ServeMux) {
	if a.cfg.WebhookURL == "" {
		return
	}
	mux.Handle("POST "+a.webhookPath, a.Handler())
}

// Handler is the webhook endpoint: 401 without the right secret token, 400
// for a body that is not an update, 503 while not running, else 200 at once
// (the update is handled in the background).
func (a *Adapter) Handler() http.Handler {
	return http.HandlerFunc(a.serveWebhook)
}

// dispatch hands an update to a worker, unless stopping or seen; polling
// waits for a free worker (wait), a webhook call does not. The info's done
// closes when the update has been handled; nil info with ok means a
// duplicate.
func (a *Adapter) dispatch(upd *models.Update, wait bool) (info *updateInfo, ok bool) {
	a.mu.Lock()
	if a.pollCtx == nil || a.stopping {
		a.mu.Unlock()
		return nil, false
	}
	for _, id := range a.recent[:min(a.recentN, len(a.recent))] {
		if id == upd.ID && upd.ID != 0 {
			a.mu.Unlock()
			return nil, true
		}
	}
	pollCtx := a.pollCtx
	a.mu.Unlock()
	if wait {
		select {
		case a.workers <- struct{}{}:
		case <-pollCtx.Done():
			return nil, false
		}
	} else {
		select {
		case a.workers <- struct{}{}:
		default:
			a.log.Warn("telegram: every worker busy; update refused for redelivery", "update_id", upd.ID, "workers", cap(a.workers))
			return nil, false
		}
	}
	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		<-a.workers
		return nil, false
	}
	a.recent[a.recentN%len(a.recent)] = upd.ID
	a.recentN++
	a.inflight.Add(1)
	ctx := a.workCtx
	a.mu.Unlock()
	info = &updateInfo{id: upd.ID, done: make(chan struct{})}
	go func() {
		defer func() { <-a.workers }()
		defer close(info.done)
		a.process(context.WithValue(ctx, updateKey{}, info), upd)
	}()
	return info, true
}

// forget removes an update id from the seen list, so a redelivery of it is
// handled.
func (a *Adapter) forget(id int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.recent[:min(a.recentN, len(a.recent))] {
		if a.recent[i] == id {
			a.recent[i] = 0
		}
	}
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func newRef() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
