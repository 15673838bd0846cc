// Package discord is forgebot's Discord front end on discordgo: slash
// commands with typed options and autocomplete, interactions over the gateway
// or at an HTTP endpoint, quotes as (by default ephemeral) interaction
// responses with buttons, and run progress in a public channel message that
// the bots.Outbox edits through Adapter's bots.Sender.
//
// It only translates: bots.Conversation parses, authorises and renders views.
// What it adds is Discord's timing and limits: every interaction gets its
// first response within 3 s (deferred when the conversation is slow), a run's
// progress lives in a normal channel message so it can be edited after the
// 15-minute interaction token dies, 429s become bots.RetryAfterError instead
// of discordgo's blocking sleep, messages stay within embed limits, and every
// message is sent with empty allowed mentions so model output pings nobody.
package discord

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"
	"golang.org/x/time/rate"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// Platform is Discord's name in identities and destinations.
const Platform = "discord"

// Limits are the outbox budgets for Discord: one edit a second per channel
// (Discord's message routes allow about 5 per 5 s per channel) and 40
// requests a second in all (the global limit is 50).
var Limits = bots.Limits{PerChat: rate.Every(time.Second), PerChatBurst: 1, Global: 40, GlobalBurst: 10}

const (
	// tokenLife is how long an interaction token may be used. Edits through
	// a token stop a minute early, so none races the expiry.
	tokenLife   = 15 * time.Minute
	tokenMargin = time.Minute
	// deadline is Discord's time for the first response; defaultDeferAfter
	// leaves room for the response itself to travel.
	deadline          = 3 * time.Second
	defaultDeferAfter = 2 * time.Second
	// maxSignatureAge refuses replayed HTTP interactions.
	maxSignatureAge = 5 * time.Minute
	// handleTimeout bounds one conversation turn after the response.
	handleTimeout = time.Minute
	// pendingWait is how long the outbox waits for a button press on a quote
	// to settle where its run's progress goes.
	pendingWait = 250 * time.Millisecond
)

// Config configures an Adapter.
type Config struct {
	Token   string // bot token, without the "Bot " prefix
	AppID   string // application id
	GuildID string // register the commands in this guild only (development); "" = globally
	// PublicKey (hex) verifies interactions posted to the HTTP endpoint.
	PublicKey string
	// APIURL moves the REST API and the gateway (a proxy, a test fake):
	// https://discord.com/api/v9/x becomes APIURL/api/v9/x. "" = Discord.
	APIURL string
	// HTTPInteractions takes interactions at POST /discord/interactions
	// (Mount) instead of the gateway.
	HTTPInteractions bool
	// AdminRoles are role ids whose members may act on anyone's runs.
	AdminRoles []string
	HTTPClient *http.Client
	Log        *slog.Logger
	Now        func() time.Time // token ages and signature timestamps
	// DeferAfter is how long a command may take before the adapter sends a
	// deferred response instead (at most 2.5 s; default 2 s).
	DeferAfter time.Duration
	// RetryMin and RetryMax bound the backoff between attempts to reach
	// Discord at start (register the commands, connect the gateway):
	// default 1 s doubling to 1 min, with jitter.
	RetryMin, RetryMax time.Duration
}

var snowflakeRE = regexp.MustCompile(`^[0-9]{1,20}$`)

// Validate checks the configuration without touching the network.
func (c Config) Validate() error {
	if c.Token == "" || strings.ContainsAny(c.Token, " \t\r\n") {
		return errors.New("discord: the bot token is empty or has spaces (give it without the \"Bot \" prefix)")
	}
	if !snowflakeRE.MatchString(c.AppID) {
		return fmt.Errorf("discord: application id %q is not a Discord id", c.AppID)
	}
	if c.GuildID != "" && !snowflakeRE.MatchString(c.GuildID) {
		return fmt.Errorf("discord: guild id %q is not a Discord id", c.GuildID)
	}
	for _, r := range c.AdminRoles {
		if !snowflakeRE.MatchString(r) {
			return fmt.Errorf("discord: admin role %q is not a Discord id", r)
		}
	}
	if c.HTTPInteractions {
		if _, err := publicKey(c.PublicKey); err != nil {
			return err
		}
	}
	if c.APIURL != "" {
		if _, err := apiBase(c.APIURL); err != nil {
			return err
		}
	}
	if c.DeferAfter < 0 || c.DeferAfter > 2500*time.Millisecond {
		return fmt.Errorf("discord: DeferAfter %s is outside 0..2.5s", c.DeferAfter)
	}
	return nil
}

func publicKey(s string) (ed25519.PublicKey, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("discord: the public key must be the application's 64 hex digit Ed25519 key")
	}
	return ed25519.PublicKey(b), nil
}

func apiBase(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("discord: API URL %q must be an absolute http(s) URL without query", s)
	}
	return u, nil
}

// Adapter is forgebot on Discord. It is a bots.Sender for the "discord"
// platform: register it with the outbox.
type Adapter struct {
	cfg        Config
	conv       *bots.Conversation
	s          *discordgo.Session
	pub        ed25519.PublicKey
	log        *slog.Logger
	now        func() time.Time
	deferAfter time.Duration
	admins     map[string]bool
	// render turns views into messages: render, but a test can make it
	// fail the way a bug would.
	render func(bots.View) message

	life     context.Context // background work: handlers after their response
	cancel   context.CancelFunc
	stopOnce sync.Once

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	// pending counts button presses being handled per quote message
	// ("channel/message"); moved says where a message's run went.
	pending map[string]int
	moved   map[string]move
	finals  map[string]time.Time // messages that show their final view
	// seen refuses HTTP interactions posted a second time.
	seen replayGuard

	// state is what /healthz says: "up", or what Start is waiting for.
	state atomic.Pointer[string]
	// handlerAdded: the gateway's interaction handler is added once,
	// however many connection attempts it takes.
	handlerAdded bool
}

// move is where the views for a message go instead.
type move struct {
	to  research.Destination
	all bool // every view (not only finals): the old message cannot be edited any more
	at  time.Time
}

var _ bots.Sender = (*Adapter)(nil)

// New builds an adapter; Start connects it.
func New(cfg Config, conv *bots.Conversation) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if conv == nil || conv.Engine == nil {
		return nil, errors.New("discord: a conversation with an engine is required")
	}
	var base *url.URL
	if cfg.APIURL != "" {
		base, _ = apiBase(cfg.APIURL)
	}
	s, err := discordgo.New("Bot " + cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("discord: %w", err)
	}
	// 429s come back as errors the outbox schedules around; discordgo would
	// otherwise time.Sleep inside the call, deaf to contexts. A 502 is not
	// retried here either: the outbox retries finals.
	s.ShouldRetryOnRateLimit = false
	s.MaxRestRetries = 0
	s.StateEnabled = false
	s.Identify.Intents = discordgo.IntentsNone // interactions need no intents
	s.LogLevel = discordgo.LogError
	s.Client = httpClient(cfg.HTTPClient, base)
	s.Dialer = dialer(base)

	a := &Adapter{cfg: cfg, conv: conv, s: s, log: cfg.Log, now: cfg.Now, deferAfter: cfg.DeferAfter,
		admins: map[string]bool{}, render: render, pending: map[string]int{}, moved: map[string]move{}, finals: map[string]time.Time{}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.deferAfter == 0 {
		a.deferAfter = defaultDeferAfter
	}
	for _, r := range cfg.AdminRoles {
		a.admins[r] = true
	}
	if cfg.HTTPInteractions {
		a.pub, _ = publicKey(cfg.PublicKey)
	}
	a.seen.overflow = func() {
		a.log.Warn("discord: too many interactions to remember against replays; forgetting the oldest early")
	}
	a.life, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// Start registers the slash commands and, unless interactions come over
// HTTP, connects the gateway. When ctx ends the adapter stops.
//
// Discord being unreachable (or answering 5xx or 429) does not fail Start:
// it logs, and retries in the background with backoff until it gets
// through or ctx ends; meanwhile State says so, sends fail (the outbox
// retries them) and everything else forgebot does goes on. Only a refused
// token (401) is returned, since no retry can fix it.
func (a *Adapter) Start(ctx context.Context) error {
	err := a.connect(ctx)
	var api *APIError
	switch {
	case err == nil:
	case errors.As(err, &api) && (api.Status == http.StatusUnauthorized || api.Status == http.StatusForbidden):
		a.setState("down: Discord refused the bot token")
		return err
	default:
		a.setState("connecting: Discord unreachable, retrying")
		a.log.Warn("discord: unreachable at start; retrying with backoff", "err", err)
		go a.retryConnect(ctx)
	}
	go func() {
		select {
		case <-ctx.Done():
			stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a.Stop(stop)
		case <-a.life.Done():
		}
	}()
	return nil
}

// connect is one attempt to register the commands and open the gateway.
func (a *Adapter) connect(ctx context.Context) error {
	if err := a.register(ctx); err != nil {
		return err
	}
	if !a.cfg.HTTPInteractions {
		a.mu.Lock()
		if !a.handlerAdded {
			a.handlerAdded = true
			a.s.AddHandler(func(_ *discordgo.Session, ic *discordgo.InteractionCreate) {
				if ic.Interaction != nil {
					a.gatewayInteraction(ic.Interaction)
				}
			})
		}
		a.mu.Unlock()
		if err := a.s.Open(); err != nil {
			return fmt.Errorf("discord gateway: %w", a.clean(err))
		}
		a.log.Info("discord gateway connected")
	}
	a.setState("up")
	return nil
}

// retryConnect repeats connect with jittered exponential backoff until it
// succeeds, the adapter stops or ctx ends. Each failure is logged once per
// attempt, and attempts thin out to RetryMax apart.
func (a *Adapter) retryConnect(ctx context.Context) {
	wait := cmp.Or(a.cfg.RetryMin, time.Second)
	maxWait := cmp.Or(a.cfg.RetryMax, time.Minute)
	for attempt := 2; ; attempt++ {
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.life.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := a.connect(ctx)
		if err == nil {
			a.log.Info("discord: reached after retrying", "attempt", attempt)
			return
		}
		a.log.Warn("discord: still unreachable; retrying", "attempt", attempt, "next_in", min(2*wait, maxWait).String(), "err", err)
		wait = min(2*wait, maxWait)
	}
}

func (a *Adapter) setState(s string) { a.state.Store(&s) }

// State is the adapter's health for /healthz: "up" once the commands are
// registered and (gateway mode) the gateway connected, else what it is
// waiting for.
func (a *Adapter) State() string {
	p := a.state.Load()
	if p == nil {
		return "starting"
	}
	if *p == "up" && !a.cfg.HTTPInteractions {
		a.s.RLock()
		ready := a.s.DataReady
		a.s.RUnlock()
		if !ready {
			return "connecting: gateway reconnecting"
		}
	}
	return *p
}

// Stop closes the gateway, refuses new interactions and waits (until ctx
// ends) for those being answered. The Sender keeps working: the outbox may
// still flush finals.
func (a *Adapter) Stop(ctx context.Context) {
	a.stopOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		if !a.cfg.HTTPInteractions {
			if err := a.s.Close(); err != nil {
				a.log.Warn("discord gateway close", "err", a.clean(err))
			}
		}
		done := make(chan struct{})
		go func() { a.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			a.log.Warn("discord: interactions still being answered at stop")
		}
		a.cancel()
	})
}

// enter admits one interaction unless the adapter is stopping.
func (a *Adapter) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.inflight.Add(1)
	return true
}

// register publishes the slash commands, globally or in the configured guild.
func (a *Adapter) register(ctx context.Context) error {
	cmds := commandDefs()
	if _, err := a.s.ApplicationCommandBulkOverwrite(a.cfg.AppID, a.cfg.GuildID, cmds, discordgo.WithContext(ctx)); err != nil {
		return fmt.Errorf("discord: register commands: %w", a.clean(err))
	}
	a.log.Info("discord commands registered", "count", len(cmds), "guild_id", a.cfg.GuildID)
	return nil
}

// APIError is a failed Discord REST call, without the request: its URL and
// headers may hold the bot token or an interaction token.
type APIError struct {
	Status  int    // HTTP status
	Code    int    // Discord's JSON error code, 0 if none
	Message string // Discord's message
}

func (e *APIError) Error() string {
	return fmt.Sprintf("discord: HTTP %d (code %d): %s", e.Status, e.Code, e.Message)
}

var tokenInPath = regexp.MustCompile(`((?:webhooks|interactions)/[0-9]+/)[^/?\s"]+`)

// redact removes tokens from s.
func (a *Adapter) redact(s string) string {
	s = tokenInPath.ReplaceAllString(s, "${1}<token>")
	if a.cfg.Token != "" {
		s = strings.ReplaceAll(s, a.cfg.Token, "<token>")
	}
	return s
}

// clean maps discordgo's errors to ones safe to log and act on: a 429 to
// *bots.RetryAfterError, a REST failure to *APIError, anything else to its
// text with tokens removed.
func (a *Adapter) clean(err error) error {
	if err == nil {
		return nil
	}
	var rl *discordgo.RateLimitError
	if errors.As(err, &rl) && rl.RateLimit != nil && rl.TooManyRequests != nil {
		return &bots.RetryAfterError{Wait: max(rl.RetryAfter, 100*time.Millisecond)}
	}
	var re *discordgo.RESTError
	if errors.As(err, &re) {
		out := &APIError{}
		if re.Response != nil {
			out.Status = re.Response.StatusCode
		}
		if re.Message != nil {
			out.Code, out.Message = re.Message.Code, a.redact(re.Message.Message)
		}
		return out
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("discord: %s request failed: %s", ue.Op, a.redact(ue.Err.Error()))
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("discord: %w", err)
	}
	return errors.New("discord: " + a.redact(err.Error()))
}

// code is err's Discord error code, 0 if it has none.
func code(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}
