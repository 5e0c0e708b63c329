package autoscale

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/dspool/dspool"
)

// Kind is a provider as a control plane knows it: its name, the settings a
// pool's provider block may give it, how it is made and how often its
// engine may be listed. The binary's wiring (cli) registers each kind
// explicitly; nothing registers itself.
type Kind struct {
	Name string
	// Settings returns a new, empty value of the provider's settings: a
	// pointer to a struct whose json tags are the block's fields. Nil:
	// the provider takes no settings.
	Settings func() Settings
	// New makes the provider; nil for a kind this control plane knows but
	// does not run here (local pools outside `dspool up`).
	New func(env Env) (Provider, error)
	// List bounds how often the provider's engine is listed.
	List ListPolicy
	// Fixed providers never grow a pool (static).
	Fixed bool
}

// Settings are one provider's settings for one pool.
type Settings interface {
	// Check fills defaults and validates the settings of pool p. Errors
	// are *dspool.Error naming the field from the pool file's root:
	// prefix + "provider.partition", or prefix + "node.cpus" where the
	// provider cannot give what the pool asks.
	Check(prefix string, p *dspool.Pool) error
}

// Env is what the wiring gives a provider it makes.
type Env struct {
	Logger *slog.Logger
	// Exe is this dspool binary; Share where this machine mounts the
	// share; DataDir the control plane's data directory.
	Exe, Share, DataDir string
	Now                 func() time.Time
	// Changed tells the list cache that the engine reported a change in
	// a pool (a provider that watches its engine calls it).
	Changed func(pool string)
}

// Registry holds the provider kinds a control plane knows, by name.
type Registry struct {
	kinds map[string]*Kind
}

// NewRegistry returns a registry of kinds; two of one name is a wiring
// mistake and an error.
func NewRegistry(kinds ...Kind) (*Registry, error) {
	r := &Registry{kinds: map[string]*Kind{}}
	for _, k := range kinds {
		if !dspool.ValidName(k.Name) {
			return nil, fmt.Errorf("provider kind %q: not a valid name", k.Name)
		}
		if r.kinds[k.Name] != nil {
			return nil, fmt.Errorf("provider kind %s registered twice", k.Name)
		}
		r.kinds[k.Name] = &k
	}
	return r, nil
}

// Builtin is the registry of a control plane wired with nothing else:
// local and static, which take no settings.
func Builtin() *Registry {
	r, _ := NewRegistry(Kind{Name: dspool.ProviderLocal}, Kind{Name: dspool.ProviderStatic, Fixed: true})
	return r
}

// Kind returns the kind called name, or nil.
func (r *Registry) Kind(name string) *Kind { return r.kinds[name] }

// Names returns the kinds' names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Check validates pool p's provider block against its kind's settings and
// writes the settings back with their defaults filled, so that what is
// stored is what the provider will read. prefix is the pool's path in the
// file ("pools[1].").
func (r *Registry) Check(prefix string, p *dspool.Pool) error {
	k := r.kinds[p.Provider.Name]
	if k == nil {
		return dspool.Invalid(prefix+"provider", "%s is not a provider this control plane knows: use one of %s", p.Provider.Name, strings.Join(r.Names(), ", "))
	}
	if k.Settings == nil {
		if names := p.Provider.SettingNames(); len(names) > 0 {
			return dspool.Invalid(prefix+"provider."+names[0], "is not a setting of provider %s, which takes none", k.Name)
		}
		return nil
	}
	s := k.Settings()
	if err := decodeSettings(prefix, p, s); err != nil {
		return err
	}
	if err := s.Check(prefix, p); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("provider %s settings: %w", k.Name, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("provider %s settings: %w", k.Name, err)
	}
	p.Provider.Settings = m
	if len(m) == 0 {
		p.Provider.Settings = nil
	}
	return nil
}

// DecodeSettings reads pool p's provider settings into s (checked already
// when the pool was applied): what a provider calls in Grow.
func DecodeSettings(p *dspool.Pool, s Settings) error {
	if err := decodeSettings("", p, s); err != nil {
		return err
	}
	return s.Check("", p)
}

func decodeSettings(prefix string, p *dspool.Pool, s Settings) error {
	b, err := json.Marshal(p.Provider.Settings)
	if err != nil {
		return err
	}
	if len(p.Provider.Settings) == 0 {
		b = []byte("{}")
	}
	err = dspool.DecodeJSON(b, s)
	var e *dspool.Error
	if errors.As(err, &e) {
		e.Field = strings.TrimSuffix(prefix+"provider."+e.Field, ".")
	}
	return err
}
