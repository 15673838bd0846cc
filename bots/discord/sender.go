package discord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// Send implements bots.Sender: it posts v as a new message in d's channel
// with the bot token. A panic while rendering or sending is recovered and
// returned as an error, so the outbox goroutine that called survives it.
func (a *Adapter) Send(ctx context.Context, d research.Destination, v bots.View) (id string, err error) {
	defer a.recoverSend("send", &err)
	m := a.render(v)
	m.ephemeral = false
	var msg *discordgo.Message
	err = a.orLinksAsText(m, func(m message) (err error) {
		msg, err = a.sendChannel(ctx, d.ChatID, m)
		return err
	})
	if err != nil {
		return "", err
	}
	return msg.ID, nil
}

// Edit implements bots.Sender. A message with a live interaction token is
// edited through the token; any other through the channel with the bot token.
// A message whose run moved to a public message forwards its final view
// there; a message that cannot be edited any more (an ephemeral or followup
// message whose token died) is replaced by a new channel message, which later
// views then edit. A 429, or a bucket that Discord's headers say is empty,
// returns *bots.RetryAfterError at once: the outbox waits, not this call.
// A view whose link button Discord refuses goes out again with the link in
// its text. A panic is recovered and returned as an error.
func (a *Adapter) Edit(ctx context.Context, d research.Destination, v bots.View) (err error) {
	defer a.recoverSend("edit", &err)
	d, key, skip, err := a.editTarget(d, v)
	if skip || err != nil {
		return err
	}
	m := a.render(v)
	m.ephemeral = false
	err = a.orLinksAsText(m, func(m message) error { return a.edit(ctx, d, m) })
	if err == nil && v.Final {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.finals[key] = a.now()
		prune(a.finals, func(t time.Time) time.Time { return t }, a.now())
	}
	return err
}

// editTarget is where a view for d goes (and its message key); skip says
// the view is stale and goes nowhere.
func (a *Adapter) editTarget(d research.Destination, v bots.View) (research.Destination, string, bool, error) {
	key := msgKey(d.ChatID, d.MessageID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if mv, ok := a.moved[key]; ok {
		if !v.Final && !mv.all {
			// The run reports in its public message now: this view is stale.
			return d, key, true, nil
		}
		d, key = mv.to, msgKey(mv.to.ChatID, mv.to.MessageID)
	} else if a.pending[key] > 0 {
		return d, key, false, &bots.RetryAfterError{Wait: pendingWait}
	}
	if _, done := a.finals[key]; done && !v.Final {
		// Never cover a final view with progress that arrived late by
		// another path.
		return d, key, true, nil
	}
	return d, key, false, nil
}

func (a *Adapter) edit(ctx context.Context, d research.Destination, m message) error {
	var err error
	if d.Token != "" && a.tokenAlive(d.When) {
		err = a.editWebhook(ctx, d.Token, original(d.MessageID), m)
	} else {
		err = a.call(discordgo.EndpointChannelMessage(d.ChatID, ""), func() error {
			_, err := a.s.ChannelMessageEditComplex(m.edit(d.ChatID, d.MessageID), discordgo.WithContext(ctx))
			return err
		})
	}
	if err == nil || d.Token == "" {
		return err
	}
	switch code(err) {
	case discordgo.ErrCodeUnknownMessage, discordgo.ErrCodeUnknownWebhook, discordgo.ErrCodeInvalidWebhookTokenProvided,
		discordgo.ErrCodeMissingAccess, discordgo.ErrCodeCannotEditFromAnotherUser:
	default:
		return err
	}
	// An interaction's message that can no longer be edited: continue in a
	// channel message the bot token can edit for as long as the run lasts.
	msg, err := a.sendChannel(ctx, d.ChatID, m)
	if err != nil {
		return err
	}
	a.log.Info("discord: interaction message no longer editable; continued in a channel message", "chat_id", d.ChatID)
	a.recordMove(msgKey(d.ChatID, d.MessageID), research.Destination{Platform: Platform, ChatID: d.ChatID, MessageID: msg.ID}, true)
	return nil
}

// The REST calls below go through call: each checks its discordgo bucket
// first, so none sleeps inside discordgo's rate limiter. The bucket keys are
// the ones discordgo v0.29.0 files each request under.

// sendChannel posts m in a channel with the bot token.
func (a *Adapter) sendChannel(ctx context.Context, channelID string, m message) (*discordgo.Message, error) {
	var msg *discordgo.Message
	if user, ok := strings.CutPrefix(channelID, "user:"); ok {
		// The user's private chat (bots.PrivateChat): their DM channel.
		var dm *discordgo.Channel
		if err := a.call(discordgo.EndpointUserChannels("@me"), func() (err error) {
			dm, err = a.s.UserChannelCreate(user, discordgo.WithContext(ctx))
			return err
		}); err != nil {
			return nil, err
		}
		channelID = dm.ID
	}
	err := a.call(discordgo.EndpointChannelMessages(channelID), func() (err error) {
		msg, err = a.s.ChannelMessageSendComplex(channelID, m.send(), discordgo.WithContext(ctx))
		return err
	})
	return msg, err
}

// editWebhook edits an interaction's message (id, or "@original") through
// its token.
func (a *Adapter) editWebhook(ctx context.Context, token, id string, m message) error {
	bucket := discordgo.EndpointWebhookToken("", "") // JSON edits share one bucket in discordgo
	if len(m.files) > 0 {
		bucket = discordgo.EndpointWebhookMessage(a.cfg.AppID, token, id)
	}
	return a.call(bucket, func() error {
		_, err := a.s.WebhookMessageEdit(a.cfg.AppID, token, id, m.webhookEdit(), discordgo.WithContext(ctx))
		return err
	})
}

// deleteWebhook deletes an interaction's message through its token.
func (a *Adapter) deleteWebhook(ctx context.Context, token, id string) error {
	return a.call(discordgo.EndpointWebhookToken("", ""), func() error {
		return a.s.WebhookMessageDelete(a.cfg.AppID, token, id, discordgo.WithContext(ctx))
	})
}

// followup posts m as a followup of interaction i.
func (a *Adapter) followup(ctx context.Context, i *discordgo.Interaction, m message) (*discordgo.Message, error) {
	var msg *discordgo.Message
	// FollowupMessageCreate(wait=true) files the request under its own URL.
	bucket := discordgo.EndpointWebhookToken(i.AppID, i.Token) + "?wait=true"
	err := a.call(bucket, func() (err error) {
		msg, err = a.s.FollowupMessageCreate(i, true, m.followup(), discordgo.WithContext(ctx))
		return err
	})
	return msg, err
}

// call makes one REST request, f, filed under bucket. When Discord's
// rate-limit headers say the bucket is empty it returns
// *bots.RetryAfterError without a request; errors come back cleaned.
func (a *Adapter) call(bucket string, f func() error) error {
	if w := a.bucketWait(bucket); w > 0 {
		return &bots.RetryAfterError{Wait: w}
	}
	return a.clean(f())
}

// linkRefused says whether Discord refused m in a way its link buttons can
// cause: 50035, invalid form body, on a message that has them.
func linkRefused(err error, m message) bool {
	return code(err) == discordgo.ErrCodeInvalidFormBody && m.hasLinks()
}

// orLinksAsText calls send with m and, when Discord refuses m's link
// buttons, once more with the links written in the text instead.
func (a *Adapter) orLinksAsText(m message, send func(message) error) error {
	err := send(m)
	if linkRefused(err, m) {
		a.log.Warn("discord: link button refused; showing the link as text", "err", err)
		err = send(m.linksAsText())
	}
	return err
}

// recoverSend turns a panic in a Sender method into an error with a
// reference that is also in the log line.
func (a *Adapter) recoverSend(op string, err *error) {
	if p := recover(); p != nil {
		ref := a.panicked("discord: sender panicked", p, "op", op)
		*err = fmt.Errorf("discord: %s panicked (ref %s)", op, ref)
	}
}

// panicked logs a recovered panic (value and stack, tokens removed) with a
// new reference and returns the reference, for the user or the caller.
func (a *Adapter) panicked(msg string, p any, attrs ...any) string {
	ref := newRef()
	attrs = append(attrs, "ref", ref, "panic", a.redact(fmt.Sprint(p)), "stack", a.redact(string(debug.Stack())))
	a.log.Error(msg, attrs...)
	return ref
}

// newRef is a short random reference for a log line and the message that
// points to it.
func newRef() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// original names an interaction's own message for webhook edits.
func original(id string) string {
	if id == "" {
		return "@original"
	}
	return id
}

// tokenAlive says whether a token issued at when may still be used.
func (a *Adapter) tokenAlive(when time.Time) bool {
	return !when.IsZero() && a.now().Sub(when) < tokenLife-tokenMargin
}

// bucketWait is how long Discord's rate-limit headers, as discordgo tracks
// them, say a request in bucket key must wait. Checking it here keeps
// discordgo from sleeping inside the call.
func (a *Adapter) bucketWait(key string) time.Duration {
	rl := a.s.Ratelimiter
	b := rl.GetBucket(key)
	b.Lock()
	defer b.Unlock()
	return rl.GetWaitTime(b, 1)
}

// hold marks a quote message as having a press in flight.
func (a *Adapter) hold(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending[key]++
}

func (a *Adapter) release(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending[key]--; a.pending[key] <= 0 {
		delete(a.pending, key)
	}
}

// recordMove sends views for the message key to d from now on: finals only,
// or every view when all is set.
func (a *Adapter) recordMove(key string, d research.Destination, all bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.moved[key] = move{to: d, all: all, at: now}
	prune(a.moved, func(m move) time.Time { return m.at }, now)
}

// keepFor is how long moves and finals are remembered: views for a message
// arrive within a run's lifetime, and a moved message only receives the
// views published before its run moved.
const keepFor = 24 * time.Hour

// prune drops entries older than keepFor once a map grows.
func prune[V any](m map[string]V, at func(V) time.Time, now time.Time) {
	if len(m) < 1024 {
		return
	}
	for k, v := range m {
		if now.Sub(at(v)) > keepFor {
			delete(m, k)
		}
	}
}
