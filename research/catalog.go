package research

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/tokensforge/forgebot/billing"
	"github.com/tokensforge/forgebot/research/llm"
)

// DefaultCatalog is the embedded catalog: the offline analyst only.
//
//go:embed catalog.json
var DefaultCatalog []byte

// OfflineBaseURL marks a route served by the built-in offline analyst.
const OfflineBaseURL = "offline:"

// Catalog lists the models forgebot can call and the routes to each.
type Catalog struct {
	DefaultModel string
	Routes       []llm.Route
	Notes        map[string]string // route id -> note shown in /models
}

type catalogFile struct {
	DefaultModel string `json:"default_model"`
	Routes       []struct {
		ID         string `json:"id"`
		Kind       string `json:"kind"`
		Model      string `json:"model"`
		BaseURL    string `json:"base_url"`
		KeyEnv     string `json:"key_env"`
		InputPerM  string `json:"input_per_m"`
		OutputPerM string `json:"output_per_m"`
		MaxContext int    `json:"max_context"`
		Enabled    bool   `json:"enabled"`
		Note       string `json:"note"`
		// CloseStopsBilling says whether closing a stream stops the
		// provider's billing; absent means it does.
		CloseStopsBilling *bool `json:"close_stops_billing"`
		// Limits are the provider's published limits for this key; calls
		// are admitted within them across instances (routegate.go).
		Limits *llm.Limits `json:"limits"`
	} `json:"routes"`
}

// ParseCatalog reads a catalog file. getenv resolves each route's key_env to
// its API key; a route whose key is missing is kept but disabled.
func ParseCatalog(data []byte, getenv func(string) string) (*Catalog, error) {
	var f catalogFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c := &Catalog{DefaultModel: f.DefaultModel, Notes: map[string]string{}}
	for i, r := range f.Routes {
		if r.ID == "" || r.Model == "" || r.BaseURL == "" {
			return nil, fmt.Errorf("catalog: route %d needs id, model and base_url", i+1)
		}
		kind := billing.RouteKind(r.Kind)
		if kind != billing.RouteOfficial && kind != billing.RouteRouted {
			return nil, fmt.Errorf("catalog: route %s: kind must be official or routed, not %q", r.ID, r.Kind)
		}
		in, err := billing.ParseMoney(r.InputPerM)
		if err != nil || in < 0 {
			return nil, fmt.Errorf("catalog: route %s: input_per_m: %v", r.ID, err)
		}
		out, err := billing.ParseMoney(r.OutputPerM)
		if err != nil || out < 0 {
			return nil, fmt.Errorf("catalog: route %s: output_per_m: %v", r.ID, err)
		}
		route := llm.Route{ID: r.ID, Kind: kind, Model: r.Model, BaseURL: r.BaseURL, KeyEnv: r.KeyEnv,
			Price: billing.Price{InputPerM: in, OutputPerM: out}, MaxContext: r.MaxContext, Enabled: r.Enabled,
			BillsAfterClose: r.CloseStopsBilling != nil && !*r.CloseStopsBilling}
		if l := r.Limits; l != nil {
			if l.Concurrent < 0 || l.RequestsPerMinute < 0 || l.TokensPerMinute < 0 {
				return nil, fmt.Errorf("catalog: route %s: limits must not be negative", r.ID)
			}
			route.Limits = *l
		}
		if r.KeyEnv != "" {
			route.APIKey = getenv(r.KeyEnv)
			if route.APIKey == "" {
				route.Enabled = false
				c.Notes[r.ID] = "disabled: " + r.KeyEnv + " is not set"
			}
		}
		if r.Note != "" && c.Notes[r.ID] == "" {
			c.Notes[r.ID] = r.Note
		}
		if err := c.Add(route); err != nil {
			return nil, err
		}
	}
	if c.DefaultModel == "" && len(c.Routes) > 0 {
		c.DefaultModel = c.Routes[0].Model
	}
	return c, nil
}

// Add appends a route; ids are unique.
func (c *Catalog) Add(r llm.Route) error {
	if c.Route(r.ID) != nil {
		return fmt.Errorf("catalog: two routes named %q", r.ID)
	}
	c.Routes = append(c.Routes, r)
	return nil
}

// Route returns the route with that id, or nil.
func (c *Catalog) Route(id string) *llm.Route {
	for i := range c.Routes {
		if c.Routes[i].ID == id {
			return &c.Routes[i]
		}
	}
	return nil
}

// Models lists model names in catalog order.
func (c *Catalog) Models() []string {
	var out []string
	for _, r := range c.Routes {
		if !slices.Contains(out, r.Model) {
			out = append(out, r.Model)
		}
	}
	return out
}

// Chain returns the routes a run of model may use, in the order they are
// tried: the preferred kind first (if any), then the rest of the same bucket,
// then, only with consent, the other bucket's routes.
func (c *Catalog) Chain(model string, prefer billing.RouteKind, consent bool) ([]llm.Route, error) {
	var enabled []llm.Route
	for _, r := range c.Routes {
		if r.Model == model && r.Enabled {
			enabled = append(enabled, r)
		}
	}
	if len(enabled) == 0 {
		return nil, fmt.Errorf("%w: %q (see /models)", ErrNoRoute, model)
	}
	first := enabled[0].Kind
	if prefer != "" {
		if !slices.ContainsFunc(enabled, func(r llm.Route) bool { return r.Kind == prefer }) {
			return nil, fmt.Errorf("%w: %q has no %s route", ErrNoRoute, model, prefer)
		}
		first = prefer
	}
	var chain []llm.Route
	for _, r := range enabled {
		if r.Kind == first {
			chain = append(chain, r)
		}
	}
	if consent {
		for _, r := range enabled {
			if r.Kind != first {
				chain = append(chain, r)
			}
		}
	}
	return chain, nil
}
