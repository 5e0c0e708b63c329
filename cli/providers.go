package cli

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// kinds is the registry of the provider kinds this binary knows: local
// (whose provider `dspool up` makes itself, with its agents), static and
// those cmd/dspool gave.
func (a *App) kinds() (*autoscale.Registry, error) {
	all := append([]autoscale.Kind{{Name: dspool.ProviderLocal}, {Name: dspool.ProviderStatic, Fixed: true}}, a.Providers...)
	r, err := autoscale.NewRegistry(all...)
	if err != nil {
		return nil, fmt.Errorf("providers: %w", err)
	}
	return r, nil
}

// startProviders makes the provider of every kind that has a maker here
// and gives it to the control plane.
func (p *plane) startProviders(kinds *autoscale.Registry, o planeOptions, log *slog.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := autoscale.Env{Logger: log, Exe: exe, Share: o.Share, DataDir: o.Data}
	for _, name := range kinds.Names() {
		prov, err := kinds.Make(name, env)
		if err != nil {
			return fmt.Errorf("provider %s: %w", name, err)
		}
		if prov != nil {
			p.srv.UseProvider(name, prov)
		}
	}
	return nil
}
