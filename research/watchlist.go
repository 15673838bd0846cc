package research

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/market"
)

// Watchlist limits.
const (
	MaxWatchlists       = 20
	MaxWatchlistSymbols = 50
)

var watchlistNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// WatchlistAdd adds symbols to one of who's watchlists, creating it.
func (e *Engine) WatchlistAdd(ctx context.Context, who billing.Identity, name string, raw []string) ([]string, error) {
	if err := checkWatchlistName(name); err != nil {
		return nil, err
	}
	add, err := normalizeAll(raw)
	if err != nil {
		return nil, err
	}
	acc, err := e.Ledger.EnsureAccount(ctx, who)
	if err != nil {
		return nil, err
	}
	return e.Store.UpdateWatchlist(ctx, acc, name, func(syms []string, exists bool, count int) ([]string, error) {
		if !exists && count >= MaxWatchlists {
			return nil, fmt.Errorf("%w: at most %d watchlists", ErrBadRequest, MaxWatchlists)
		}
		for _, s := range add {
			if !slices.Contains(syms, s) {
				syms = append(syms, s)
			}
		}
		if len(syms) > MaxWatchlistSymbols {
			return nil, fmt.Errorf("%w: a watchlist holds at most %d symbols", ErrBadRequest, MaxWatchlistSymbols)
		}
		return syms, nil
	})
}

// WatchlistRemove removes symbols from a watchlist, or the whole list when none are given.
func (e *Engine) WatchlistRemove(ctx context.Context, who billing.Identity, name string, raw []string) ([]string, error) {
	if err := checkWatchlistName(name); err != nil {
		return nil, err
	}
	drop, err := normalizeAll(raw)
	if err != nil {
		return nil, err
	}
	acc, err := e.Ledger.EnsureAccount(ctx, who)
	if err != nil {
		return nil, err
	}
	return e.Store.UpdateWatchlist(ctx, acc, name, func(syms []string, exists bool, _ int) ([]string, error) {
		if !exists {
			return nil, fmt.Errorf("%w: you have no watchlist %q", ErrBadRequest, name)
		}
		if len(drop) == 0 {
			return nil, nil
		}
		return slices.DeleteFunc(syms, func(s string) bool { return slices.Contains(drop, s) }), nil
	})
}

// WatchlistsOf returns who's watchlists and the presets.
func (e *Engine) WatchlistsOf(ctx context.Context, who billing.Identity) (own, presets map[string][]string, err error) {
	presets = maps.Clone(market.Presets)
	acc, err := e.Ledger.AccountOf(ctx, who)
	if err != nil {
		return map[string][]string{}, presets, nil
	}
	own, err = e.Store.Watchlists(ctx, acc)
	return own, presets, err
}

// resolveWatchlist finds an account's list by name, else a preset.
func (e *Engine) resolveWatchlist(ctx context.Context, acc billing.AccountID, name string) ([]string, error) {
	own, err := e.Store.Watchlists(ctx, acc)
	if err != nil {
		return nil, err
	}
	if syms, ok := own[name]; ok {
		return syms, nil
	}
	if syms, ok := market.Presets[name]; ok {
		return syms, nil
	}
	return nil, fmt.Errorf("%w: unknown watchlist %q (see /watchlist show)", ErrBadRequest, name)
}

func checkWatchlistName(name string) error {
	if !watchlistNameRE.MatchString(name) {
		return fmt.Errorf("%w: a watchlist name is 1-32 lowercase letters, digits or dashes", ErrBadRequest)
	}
	if _, ok := market.Presets[name]; ok {
		return fmt.Errorf("%w: %q is a preset; choose another name", ErrBadRequest, name)
	}
	return nil
}

func normalizeAll(raw []string) ([]string, error) {
	var out []string
	for _, r := range raw {
		s, err := market.NormalizeSymbol(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}
