// Package bots will hold the conversation every chat platform shares (the run
// engine issue); bots/telegram and bots/discord only translate. It is empty until then.
package bots
