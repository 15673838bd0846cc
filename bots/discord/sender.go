package discord

import (
	"context"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// Send implements bots.Sender: it posts v as a new message in d's channel
// with the bot token.
func (a *Adapter) Send(ctx context.Context, d research.Destination, v bots.View) (string, error) {
	if w := a.bucketWait(discordgo.EndpointChannelMessages(d.ChatID)); w > 0 {
		return "", &bots.RetryAfterError{Wait: w}
	}
	msg, err := a.s.ChannelMessageSendComplex(d.ChatID, render(v).send(), discordgo.WithContext(ctx))
	if err != nil {
		return "", a.clean(err)
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
func (a *Adapter) Edit(ctx context.Context, d research.Destination, v bots.View) error {
	key := msgKey(d.ChatID, d.MessageID)
	a.mu.Lock()
	if mv, ok := a.moved[key]; ok {
		if !v.Final && !mv.all {
			// The run reports in its public message now: this view is stale.
			a.mu.Unlock()
			return nil
		}
		d, key = mv.to, msgKey(mv.to.ChatID, mv.to.MessageID)
	} else if a.pending[key] > 0 {
		a.mu.Unlock()
		return &bots.RetryAfterError{Wait: pendingWait}
	}
	if _, done := a.finals[key]; done && !v.Final {
		// Never cover a final view with progress that arrived late by
		// another path.
		a.mu.Unlock()
		return nil
	}
	a.mu.Unlock()

	err := a.edit(ctx, d, v)
	if err == nil && v.Final {
		a.mu.Lock()
		a.finals[key] = a.now()
		prune(a.finals, func(t time.Time) time.Time { return t }, a.now())
		a.mu.Unlock()
	}
	return err
}

func (a *Adapter) edit(ctx context.Context, d research.Destination, v bots.View) error {
	m := render(v)
	m.ephemeral = false
	opt := discordgo.WithContext(ctx)
	var err error
	if d.Token != "" && a.tokenAlive(d.When) {
		bucket := discordgo.EndpointWebhookToken("", "") // discordgo's bucket for JSON webhook edits
		if len(m.files) > 0 {
			bucket = discordgo.EndpointWebhookMessage(a.cfg.AppID, d.Token, original(d.MessageID))
		}
		if w := a.bucketWait(bucket); w > 0 {
			return &bots.RetryAfterError{Wait: w}
		}
		_, err = a.s.WebhookMessageEdit(a.cfg.AppID, d.Token, original(d.MessageID), m.webhookEdit(), opt)
	} else {
		if w := a.bucketWait(discordgo.EndpointChannelMessage(d.ChatID, "")); w > 0 {
			return &bots.RetryAfterError{Wait: w}
		}
		_, err = a.s.ChannelMessageEditComplex(m.edit(d.ChatID, d.MessageID), opt)
	}
	err = a.clean(err)
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
	msg, serr := a.s.ChannelMessageSendComplex(d.ChatID, m.send(), opt)
	if serr != nil {
		return a.clean(serr)
	}
	a.log.Info("discord: interaction message no longer editable; continued in a channel message", "chat_id", d.ChatID)
	a.recordMove(msgKey(d.ChatID, d.MessageID), research.Destination{Platform: Platform, ChatID: d.ChatID, MessageID: msg.ID}, true)
	return nil
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
