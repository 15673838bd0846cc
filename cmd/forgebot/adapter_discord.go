package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/tokensforge/forgebot/bots/discord"
)

// setupDiscord turns the Discord adapter on when DISCORD_BOT_TOKEN and
// DISCORD_APP_ID are set: it registers the adapter with the outbox, mounts
// POST /discord/interactions on mux when DISCORD_INTERACTIONS=http, registers
// the slash commands and connects. The adapter stops when ctx ends.
//
//	DISCORD_BOT_TOKEN     bot token (without "Bot ")
//	DISCORD_APP_ID        application id
//	DISCORD_GUILD_ID      register the commands in this guild only (development)
//	DISCORD_INTERACTIONS  gateway (default) or http
//	DISCORD_PUBLIC_KEY    the application's public key (hex), required with http
//	DISCORD_API_URL       another base for the REST API and the gateway (a proxy)
//	DISCORD_ADMIN_ROLES   comma-separated role ids whose members may act on anyone's runs
func setupDiscord(ctx context.Context, cfg Config, a *app, mux *http.ServeMux) (bool, error) {
	get := func(name string) string { return strings.TrimSpace(cfg.getenv(name)) }
	token, appID := get("DISCORD_BOT_TOKEN"), get("DISCORD_APP_ID")
	if token == "" && appID == "" {
		return false, nil
	}
	if token == "" || appID == "" {
		return false, badInput("DISCORD_BOT_TOKEN and DISCORD_APP_ID go together")
	}
	dc := discord.Config{
		Token:     strings.TrimPrefix(token, "Bot "),
		AppID:     appID,
		GuildID:   get("DISCORD_GUILD_ID"),
		PublicKey: get("DISCORD_PUBLIC_KEY"),
		APIURL:    strings.TrimRight(get("DISCORD_API_URL"), "/"),
		Log:       a.log.With("adapter", "discord"),
	}
	switch mode := strings.ToLower(get("DISCORD_INTERACTIONS")); mode {
	case "", "gateway":
	case "http":
		dc.HTTPInteractions = true
		if dc.PublicKey == "" {
			return false, badInput("DISCORD_INTERACTIONS=http needs DISCORD_PUBLIC_KEY")
		}
		if mux == nil {
			return false, fmt.Errorf("discord: DISCORD_INTERACTIONS=http but no HTTP server to mount %s on", discord.InteractionsPath)
		}
	default:
		return false, badInput("DISCORD_INTERACTIONS must be gateway or http, got %q", mode)
	}
	for _, r := range strings.Split(get("DISCORD_ADMIN_ROLES"), ",") {
		if r = strings.TrimSpace(r); r != "" {
			dc.AdminRoles = append(dc.AdminRoles, r)
		}
	}
	// Validate's messages name the offending value, never the token.
	if err := dc.Validate(); err != nil {
		return false, badInput("%v", err)
	}
	ad, err := discord.New(dc, a.conv)
	if err != nil {
		return false, badInput("%v", err)
	}
	lim := discord.Limits
	lim.Shared = a.sharedRates() != nil // every instance's edits of a channel share its budget
	a.outbox.Register(discord.Platform, ad, lim)
	if dc.HTTPInteractions {
		ad.Mount(mux)
	}
	// Discord unreachable is not an error here: Start retries in the
	// background while everything else serves. A refused token is.
	if err := ad.Start(ctx); err != nil {
		return false, badInput("DISCORD_BOT_TOKEN: %v", err)
	}
	a.setState(discord.Platform, ad.State)
	mode := "gateway"
	if dc.HTTPInteractions {
		mode = "http " + discord.InteractionsPath
	}
	a.log.Info("discord adapter started", "interactions", mode, "guild_id", dc.GuildID)
	a.adapterStops = append(a.adapterStops, ad.Stop)
	return true, nil
}
