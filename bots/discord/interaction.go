package discord

import (
	"context"
	"errors"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research"
)

// responder sends an interaction's first response: a REST callback for
// gateway interactions, the HTTP answer for posted ones.
type responder interface {
	respond(ctx context.Context, r *discordgo.InteractionResponse) error
}

// errAnsweredLate says a deferred response went out instead (the HTTP
// endpoint's safety net); what was meant as the first response must be sent
// as a followup or an edit of @original.
var errAnsweredLate = errors.New("discord: a deferred response was sent first")

// restResponder answers over REST.
type restResponder struct {
	a *Adapter
	i *discordgo.Interaction
}

func (r restResponder) respond(ctx context.Context, resp *discordgo.InteractionResponse) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	return r.a.clean(r.a.s.InteractionRespond(r.i, resp, discordgo.WithContext(ctx)))
}

// gatewayInteraction handles an INTERACTION_CREATE from the gateway
// (discordgo calls it on its own goroutine).
func (a *Adapter) gatewayInteraction(i *discordgo.Interaction) {
	received := time.Now()
	if !a.enter() {
		return
	}
	defer a.inflight.Done()
	a.handle(i, received, restResponder{a, i})
}

// turn is one interaction being answered.
type turn struct {
	a        *Adapter
	i        *discordgo.Interaction
	rs       responder
	received time.Time

	answered          bool // a first response (perhaps a deferral) went out
	deferred          bool // and it was a deferral
	deferredEphemeral bool
}

func (t *turn) component() bool { return t.i.Type == discordgo.InteractionMessageComponent }

// handle answers one interaction. received is when it arrived: Discord's
// 3-second deadline counts from about then.
func (a *Adapter) handle(i *discordgo.Interaction, received time.Time, rs responder) {
	t := &turn{a: a, i: i, rs: rs, received: received}
	ctx, cancel := context.WithTimeout(a.life, handleTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			ref := a.panicked("discord: interaction handler panicked", p, "interaction_id", i.ID)
			if !t.answered {
				t.deliver(ctx, reply{kind: discordgo.InteractionResponseChannelMessageWithSource, msg: alert(sorry(ref), true)})
			}
		}
	}()
	switch i.Type {
	case discordgo.InteractionPing:
		t.deliver(ctx, reply{kind: discordgo.InteractionResponsePong})
	case discordgo.InteractionApplicationCommandAutocomplete:
		data, _ := i.Data.(discordgo.ApplicationCommandInteractionData)
		err := rs.respond(ctx, &discordgo.InteractionResponse{Type: discordgo.InteractionApplicationCommandAutocompleteResult,
			Data: &discordgo.InteractionResponseData{Choices: a.autocomplete(ctx, i, data)}})
		if err != nil {
			a.log.Warn("discord: autocomplete answer failed", "interaction_id", i.ID, "err", err)
		}
	case discordgo.InteractionApplicationCommand, discordgo.InteractionMessageComponent:
		t.converse(ctx)
	default:
		t.deliver(ctx, reply{kind: discordgo.InteractionResponseChannelMessageWithSource, msg: alert("forgebot does not handle that.", true)})
	}
}

// sorry is the apology for a handler that panicked; ref is in the log line.
func sorry(ref string) string {
	return "Something went wrong (ref " + ref + "). Nothing was charged for it."
}

// incoming is who did what where, as the conversation reads it.
func (a *Adapter) incoming(i *discordgo.Interaction) (bots.Incoming, error) {
	var (
		user  *discordgo.User
		roles []string
	)
	if i.Member != nil {
		user, roles = i.Member.User, i.Member.Roles
	}
	if user == nil {
		user = i.User
	}
	if user == nil || !snowflakeRE.MatchString(user.ID) || !snowflakeRE.MatchString(i.ChannelID) {
		return bots.Incoming{}, errors.New("discord: interaction without a user or channel")
	}
	in := bots.Incoming{
		Identity: billing.Identity{Platform: Platform, ExternalID: user.ID},
		Chat:     bots.Chat{Platform: Platform, ID: i.ChannelID, Group: i.GuildID != ""},
		Token:    i.Token,
		At:       a.now(),
	}
	for _, r := range roles {
		if a.admins[r] {
			in.Admin = true
		}
	}
	return in, nil
}

// quoteMessage says whether a button's message may be a quote: an
// interaction response (ephemeral or not), as opposed to the channel messages
// runs report progress in.
func quoteMessage(m *discordgo.Message) bool {
	return m != nil && (m.Flags&discordgo.MessageFlagsEphemeral != 0 || m.Interaction != nil || m.InteractionMetadata != nil || m.WebhookID != "")
}

func msgKey(channelID, messageID string) string { return channelID + "/" + messageID }

// converse runs a command or a button press through the conversation, within
// the deadline: if the conversation has not answered by DeferAfter, a
// deferred response goes out and the answer follows as an edit.
func (t *turn) converse(ctx context.Context) {
	a := t.a
	in, err := a.incoming(t.i)
	if err != nil {
		t.deliver(ctx, reply{kind: discordgo.InteractionResponseChannelMessageWithSource, msg: alert("forgebot could not tell who you are here.", true)})
		return
	}
	public := false
	key := ""
	if t.component() {
		data, _ := t.i.Data.(discordgo.MessageComponentInteractionData)
		in.Button = data.CustomID
		if len(data.Values) > 0 { // a select menu's option carries the payload
			in.Button = data.Values[0]
		}
		if t.i.Message != nil {
			in.MessageID = t.i.Message.ID
			key = msgKey(t.i.ChannelID, t.i.Message.ID)
			if quoteMessage(t.i.Message) {
				// A confirm publishes a "queued" view for this message before
				// the run moves to its public message: hold it back until then.
				a.hold(key)
				defer a.release(key)
			}
		}
	} else {
		data, _ := t.i.Data.(discordgo.ApplicationCommandInteractionData)
		in.Text, public = commandText(data)
		in.Delivery = t.i.ID // an interaction delivered twice does its command once
	}

	done := make(chan []bots.Reply, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ref := a.panicked("discord: conversation panicked", p, "interaction_id", t.i.ID)
				done <- []bots.Reply{{Alert: sorry(ref), View: bots.View{Kind: bots.KindError, Text: sorry(ref), Private: true}}}
			}
		}()
		done <- a.conv.Handle(ctx, in)
	}()
	var replies []bots.Reply
	timer := time.NewTimer(max(a.deferAfter-time.Since(t.received), 0))
	defer timer.Stop()
	select {
	case replies = <-done:
	case <-timer.C:
		if err := t.deferNow(ctx, !public); err != nil {
			a.log.Warn("discord: deferred response failed", "interaction_id", t.i.ID, "err", err)
		}
		select {
		case replies = <-done:
		case <-ctx.Done():
			return
		}
	}
	a.log.Debug("discord interaction answered", "interaction_id", t.i.ID, "deferred", t.deferred,
		"took_ms", time.Since(t.received).Milliseconds())
	t.answer(ctx, in, replies, public, key)
}

// reply is a response to send: its callback type and message.
type reply struct {
	kind discordgo.InteractionResponseType
	msg  message
}

func empty(v bots.View) bool {
	return v.Title == "" && v.Text == "" && len(v.Fields) == 0 && len(v.Image) == 0 && len(v.File) == 0
}

// commandMessage renders a command's reply: ephemeral unless public was
// asked for (a private view other than a quote, such as a link code or an
// error, stays ephemeral regardless).
func (a *Adapter) commandMessage(r bots.Reply, public bool) message {
	if empty(r.View) {
		return alert(r.Alert, true)
	}
	m := a.render(r.View)
	m.ephemeral = !public || (r.View.Private && r.View.Kind != bots.KindQuote)
	return m
}

// answer sends the conversation's replies: the first as the interaction's
// response, the rest as followups; a confirmed run gets its public message.
func (t *turn) answer(ctx context.Context, in bots.Incoming, replies []bots.Reply, public bool, key string) {
	if len(replies) == 0 {
		replies = []bots.Reply{{}}
	}
	first := replies[0]
	var (
		out     reply
		extra   []message
		confirm *bots.Reply
	)
	const (
		newMsg = discordgo.InteractionResponseChannelMessageWithSource
		update = discordgo.InteractionResponseUpdateMessage
	)
	if t.component() {
		switch {
		case first.RunID != "":
			note := first.Alert
			if note == "" {
				note = "Confirmed."
			}
			out = reply{update, t.a.render(bots.View{Kind: bots.KindInfo, Text: note + "\nProgress follows in a message in this channel."})}
			confirm = &first
		case first.Edit && !empty(first.View):
			out = reply{update, t.a.render(first.View)}
			if first.Alert != "" {
				extra = append(extra, alert(first.Alert, true))
			}
		case first.Alert != "":
			out = reply{newMsg, alert(first.Alert, true)}
		case !empty(first.View):
			m := t.a.render(first.View)
			m.ephemeral = first.View.Private
			out = reply{newMsg, m}
		default: // nothing to show: acknowledge, change nothing
			out = reply{kind: discordgo.InteractionResponseDeferredMessageUpdate}
		}
	} else {
		out = reply{newMsg, t.a.commandMessage(first, public)}
	}
	for _, r := range replies[1:] {
		extra = append(extra, t.a.commandMessage(r, public))
	}
	t.deliver(ctx, out)
	for _, m := range extra {
		err := t.a.retry(ctx, func() error {
			return t.a.orLinksAsText(m, func(m message) error {
				_, err := t.a.followup(ctx, t.i, m)
				return err
			})
		})
		if err != nil {
			t.a.log.Warn("discord: followup failed", "interaction_id", t.i.ID, "err", err)
		}
	}
	if confirm != nil {
		t.a.publishRun(ctx, t, in, *confirm, key)
	}
}

// deferNow sends a deferred response: "thinking" for a command (ephemeral
// or not), an acknowledged update for a button.
func (t *turn) deferNow(ctx context.Context, ephemeral bool) error {
	resp := &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate}
	if !t.component() {
		resp.Type = discordgo.InteractionResponseDeferredChannelMessageWithSource
		if ephemeral {
			resp.Data = &discordgo.InteractionResponseData{Flags: discordgo.MessageFlagsEphemeral}
		}
	}
	err := t.rs.respond(ctx, resp)
	t.answered, t.deferred, t.deferredEphemeral = true, true, ephemeral
	if errors.Is(err, errAnsweredLate) {
		// The safety net deferred, ephemerally for commands.
		t.deferredEphemeral = true
		return nil
	}
	return err
}

// deliver sends r as the first response, or, after a deferral, as the edit
// or followup that takes its place.
func (t *turn) deliver(ctx context.Context, r reply) {
	if !t.answered && len(r.msg.files) > 0 {
		// Uploads do not go in a first response: they could miss the deadline
		// and the HTTP answer is JSON.
		if err := t.deferNow(ctx, r.msg.ephemeral); err != nil {
			t.a.log.Warn("discord: deferred response failed", "interaction_id", t.i.ID, "err", err)
		}
	}
	if !t.answered {
		withData := r.kind == discordgo.InteractionResponseChannelMessageWithSource || r.kind == discordgo.InteractionResponseUpdateMessage
		err := t.a.orLinksAsText(r.msg, func(m message) error {
			resp := &discordgo.InteractionResponse{Type: r.kind}
			if withData {
				resp.Data = m.response()
			}
			return t.rs.respond(ctx, resp)
		})
		if !errors.Is(err, errAnsweredLate) {
			t.answered = true
			if err != nil {
				t.a.log.Warn("discord: interaction response failed", "interaction_id", t.i.ID, "type", int(r.kind),
					"late_ms", time.Since(t.received).Milliseconds(), "err", err)
			}
			return
		}
		t.answered, t.deferred, t.deferredEphemeral = true, true, true
	}
	t.afterDefer(ctx, r)
}

// afterDefer sends what was meant as the first response after a deferral.
func (t *turn) afterDefer(ctx context.Context, r reply) {
	a := t.a
	editOriginal := func() error {
		// After a deferred update, @original is the button's message.
		return a.orLinksAsText(r.msg, func(m message) error { return a.editWebhook(ctx, t.i.Token, "@original", m) })
	}
	followup := func() error {
		return a.orLinksAsText(r.msg, func(m message) error {
			_, err := a.followup(ctx, t.i, m)
			return err
		})
	}
	var err error
	switch r.kind {
	case discordgo.InteractionResponseUpdateMessage:
		err = a.retry(ctx, editOriginal)
	case discordgo.InteractionResponseChannelMessageWithSource:
		switch {
		case t.component():
			err = a.retry(ctx, followup)
		case r.msg.ephemeral && !t.deferredEphemeral:
			// Deferred in public, but the answer is private: replace the
			// "thinking" message with an ephemeral followup.
			derr := a.retry(ctx, func() error { return a.deleteWebhook(ctx, t.i.Token, "@original") })
			if derr != nil {
				a.log.Warn("discord: delete deferred response", "interaction_id", t.i.ID, "err", derr)
			}
			err = a.retry(ctx, followup)
		default:
			err = a.retry(ctx, editOriginal)
		}
	}
	if err != nil {
		a.log.Warn("discord: answer after deferral failed", "interaction_id", t.i.ID, "err", err)
	}
}

// retry calls f once more when Discord answers 429 with a short wait: an
// answer to a user is worth a second try, a blind loop is not.
func (a *Adapter) retry(ctx context.Context, f func() error) error {
	err := f()
	var ra *bots.RetryAfterError
	if !errors.As(err, &ra) || ra.Wait > 5*time.Second {
		return err
	}
	timer := time.NewTimer(ra.Wait)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return err
	}
	return f()
}

// publishRun posts a confirmed run's progress as a public channel message
// (the bot token edits it for as long as the run lasts, past the interaction
// token's 15 minutes) and points the run at it. If the bot may not post in
// the channel, a public followup stands in, edited through the token.
func (a *Adapter) publishRun(ctx context.Context, t *turn, in bots.Incoming, r bots.Reply, key string) {
	m := a.render(r.View)
	m.ephemeral = false
	var (
		d   research.Destination
		msg *discordgo.Message
	)
	// A bucket that stays empty past retry's short wait counts as a failure
	// here: the followup below, in another bucket, keeps the handler from
	// waiting on the channel.
	err := a.retry(ctx, func() (err error) {
		msg, err = a.sendChannel(ctx, t.i.ChannelID, m)
		return err
	})
	if err == nil {
		d = research.Destination{Platform: Platform, ChatID: t.i.ChannelID, MessageID: msg.ID}
	} else {
		a.log.Warn("discord: cannot post the progress message; using a followup", "run_id", r.RunID,
			"channel_id", t.i.ChannelID, "err", err)
		err = a.retry(ctx, func() (err error) {
			msg, err = a.followup(ctx, t.i, m)
			return err
		})
		if err != nil {
			a.log.Error("discord: no message for the run's progress; it stays on the quote", "run_id", r.RunID, "err", err)
			return
		}
		d = research.Destination{Platform: Platform, ChatID: t.i.ChannelID, MessageID: msg.ID, Token: t.i.Token, When: in.At}
	}
	if key != "" {
		a.recordMove(key, d, false)
	}
	mctx := ctx
	if in.Admin {
		mctx = research.WithAdmin(ctx)
	}
	if err := a.conv.MoveRun(mctx, r.RunID, in.Identity, d); err != nil {
		a.log.Error("discord: move run progress", "run_id", r.RunID, "err", err)
		return
	}
	// Progress published before the move went to the quote's message and was
	// dropped there: show the run's state now, so a long stage does not sit
	// under a "queued" card. A final is forwarded by Edit instead.
	if run, err := a.conv.Runs.Run(ctx, r.RunID); err == nil && !run.State.Terminal() && a.conv.Outbox != nil {
		a.conv.Outbox.SubmitRun(d, a.conv.ProgressView(a.conv.Engine.Snapshot(run, "")), run.ID, run.Version)
	}
}
