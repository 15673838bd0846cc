// Package bots is the conversation every chat platform shares: it parses
// commands, authorises button presses, calls the research engine and renders
// platform-neutral views (text, fields, buttons with opaque payloads,
// attachments). The edit outbox delivers run progress to chat messages within
// each platform's rate limits. bots/console, bots/telegram and bots/discord
// only translate between their platform and these types.
package bots
