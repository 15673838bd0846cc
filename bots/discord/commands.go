package discord

import (
	"context"
	"fmt"
	"github.com/tokensforge/forgebot/billing"
	"maps"
	"slices"
	"strings"

	"github.com/bwmarrin/discordgo"

	"github.com/tokensforge/forgebot/bots"
	"github.com/tokensforge/forgebot/research/market"
)

// Option names. "public" is the adapter's own: it makes a quote visible to
// the channel; every other option becomes an argument of the command line the
// conversation parses, in the order listed in commandDefs.
const (
	optSymbols   = "symbols"
	optDepth     = "depth"
	optModel     = "model"
	optWatchlist = "watchlist"
	optPublic    = "public"
	optQuestion  = "question"
	optCap       = "cap" // becomes cap:AMOUNT
	optAsk       = "ask" // becomes ask:on|off
)

func capOption() *discordgo.ApplicationCommandOption {
	return &discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionString, Name: optCap,
		Description: "an agent run's cap in dollars, like 0.50 (default 0.50)", MaxLength: 12}
}

func askOption() *discordgo.ApplicationCommandOption {
	return &discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionString, Name: optAsk,
		Description: "ask to continue at 80% of the cap (on by default)",
		Choices:     []*discordgo.ApplicationCommandOptionChoice{{Name: "on", Value: "on"}, {Name: "off", Value: "off"}}}
}

func depthOption() *discordgo.ApplicationCommandOption {
	return &discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionString, Name: optDepth,
		Description: "how thorough (and how costly); quick by default",
		Choices: []*discordgo.ApplicationCommandOptionChoice{
			{Name: "quick", Value: "quick"}, {Name: "standard", Value: "standard"}, {Name: "deep", Value: "deep"}, {Name: "agent", Value: "agent"},
		}}
}

func publicOption() *discordgo.ApplicationCommandOption {
	return &discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionBoolean, Name: optPublic,
		Description: "show the quote to the channel (only you see it by default)"}
}

func stringOption(name, desc string, required, autocomplete bool) *discordgo.ApplicationCommandOption {
	return &discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionString, Name: name,
		Description: desc, Required: required, Autocomplete: autocomplete, MaxLength: 200}
}

// commandDefs are the slash commands, one per bots.Commands entry, with typed
// options where the command takes arguments.
func commandDefs() []*discordgo.ApplicationCommand {
	var out []*discordgo.ApplicationCommand
	for _, c := range bots.Commands {
		cmd := &discordgo.ApplicationCommand{Type: discordgo.ChatApplicationCommand, Name: c.Name,
			Description: truncate(c.Help, 100), Options: []*discordgo.ApplicationCommandOption{}}
		switch c.Name {
		case "research":
			cmd.Options = append(cmd.Options,
				stringOption(optSymbols, "up to 10 symbols, like NVDA AMD", true, false),
				depthOption(),
				stringOption(optModel, "the model to use (the catalog's default otherwise)", false, true),
				capOption(), askOption(),
				publicOption())
		case "scan":
			cmd.Options = append(cmd.Options,
				stringOption(optWatchlist, "a watchlist preset", true, true),
				depthOption(),
				capOption(), askOption(),
				publicOption())
		case "ask":
			q := stringOption(optQuestion, "your question, like: is NVDA overbought against the other semis?", true, false)
			q.MaxLength = 500
			cmd.Options = append(cmd.Options, q,
				capOption(), askOption(),
				stringOption(optModel, "the model to use (the catalog's default otherwise)", false, true),
				publicOption())
		case "receipt":
			cmd.Options = append(cmd.Options, stringOption("id", "the receipt id", true, false))
		case "cancel":
			cmd.Options = append(cmd.Options, stringOption("run", "the run id (your latest running run otherwise)", false, false))
		case "link":
			cmd.Options = append(cmd.Options, stringOption("code", "a code from /link on your other platform (none: get a code)", false, false))
		default:
			if c.Args != "" {
				cmd.Options = append(cmd.Options, stringOption("args", truncate(c.Args, 100), false, false))
			}
		}
		out = append(out, cmd)
	}
	return out
}

// commandText turns a slash command into the command line the conversation
// parses ("/research NVDA AMD deep model:gpt-4o-mini"), in the options' declared
// order, and reports the public option. Values are folded onto one line.
func commandText(d discordgo.ApplicationCommandInteractionData) (text string, public bool) {
	parts := []string{"/" + d.Name}
	var order []string
	for _, c := range commandDefs() {
		if c.Name == d.Name {
			for _, o := range c.Options {
				order = append(order, o.Name)
			}
		}
	}
	byName := map[string]*discordgo.ApplicationCommandInteractionDataOption{}
	for _, o := range d.Options {
		if o != nil {
			byName[o.Name] = o
			if !slices.Contains(order, o.Name) {
				order = append(order, o.Name)
			}
		}
	}
	for _, name := range order {
		o := byName[name]
		if o == nil {
			continue
		}
		if name == optPublic {
			b, ok := o.Value.(bool)
			public = ok && b
			continue
		}
		if name == optCap || name == optAsk { // the conversation reads them as cap:AMOUNT and ask:off
			if v := strings.Join(strings.Fields(fmt.Sprint(o.Value)), ""); v != "" && o.Value != nil {
				parts = append(parts, name+":"+v)
			}
			continue
		}
		if name == optModel { // typed as a model, so never mistaken for a symbol
			if v := strings.Join(strings.Fields(fmt.Sprint(o.Value)), ""); v != "" && o.Value != nil {
				parts = append(parts, "model:"+v)
			}
			continue
		}
		if v := strings.Join(strings.Fields(fmt.Sprint(o.Value)), " "); v != "" && o.Value != nil {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, " "), public
}

// autocomplete offers up to 25 choices for the focused option: catalog
// models, or the user's own watchlists and the presets, containing what was typed.
func (a *Adapter) autocomplete(ctx context.Context, i *discordgo.Interaction, d discordgo.ApplicationCommandInteractionData) []*discordgo.ApplicationCommandOptionChoice {
	var focused *discordgo.ApplicationCommandInteractionDataOption
	for _, o := range d.Options {
		if o != nil && o.Focused {
			focused = o
		}
	}
	choices := []*discordgo.ApplicationCommandOptionChoice{}
	if focused == nil {
		return choices
	}
	typed := strings.ToLower(strings.TrimSpace(fmt.Sprint(focused.Value)))
	if focused.Value == nil {
		typed = ""
	}
	type entry struct{ name, value string }
	var entries []entry
	switch focused.Name {
	case optModel:
		for _, m := range a.conv.Engine.Catalog.Models() {
			entries = append(entries, entry{m, m})
		}
	case optWatchlist:
		own, presets := map[string][]string{}, market.Presets
		if u := interactionUser(i); u != nil {
			var err error
			if own, presets, err = a.conv.Engine.WatchlistsOf(ctx, billing.Identity{Platform: Platform, ExternalID: u.ID}); err != nil {
				a.log.Warn("discord: watchlists for autocomplete", "err", err)
			}
		}
		for _, lists := range []map[string][]string{own, presets} {
			names := slices.Sorted(maps.Keys(lists))
			for _, k := range names {
				entries = append(entries, entry{k + ": " + strings.Join(lists[k], ", "), k})
			}
		}
	}
	for _, e := range entries {
		if len(choices) == 25 {
			break
		}
		if len(e.value) > 100 {
			continue
		}
		if typed == "" || strings.Contains(strings.ToLower(e.value), typed) {
			choices = append(choices, &discordgo.ApplicationCommandOptionChoice{Name: truncate(e.name, 100), Value: e.value})
		}
	}
	return choices
}

// interactionUser is who sent an interaction, in a guild or a DM.
func interactionUser(i *discordgo.Interaction) *discordgo.User {
	if i.Member != nil && i.Member.User != nil {
		return i.Member.User
	}
	return i.User
}
