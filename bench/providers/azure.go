package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/provider/azurevmss/armfake"
)

var azureKinds = []string{"GET scale set", "PATCH scale set", "GET instances", "POST delete instances", "GET operation"}

// azureEngine starts a local fake of Azure Resource Manager with one scale
// set, and gives dspool what it needs to talk to it (armfake's
// ProcessEnv: its certificate, and Azure CLI's credential from an `az`
// that hands out the fake's token). Its machines are agents started from each instance's
// custom data once the fake has provisioned it (200 ms: the figures are
// dspool's part, above a real machine's boot).
func azureEngine() (*engine, string, error) {
	fake := armfake.New()
	const sub, rg = "0b4a7c52-9f0e-4d7b-8f5c-2d2a7f0e9c11", "bench"
	set := fake.Add(sub, rg, &armfake.ScaleSet{Name: "nodes"})
	dir, err := os.MkdirTemp("", "dspool-bench-azure-")
	if err != nil {
		fake.Close()
		return nil, "", err
	}
	path := os.Getenv("PATH")
	env, err := fake.ProcessEnv(dir, path)
	if err != nil {
		fake.Close()
		return nil, "", err
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	done := make(chan struct{})
	started := false
	return &engine{
		name:  "Azure scale set (a local fake of Resource Manager; an agent started from each instance's custom data)",
		kinds: azureKinds, grow: "PATCH scale set", remove: "POST delete instances",
		settings: func(bin, share, tmp string) (dspool.ProviderSpec, error) {
			return dspool.ProviderSpec{Name: "azure-vmss", Settings: map[string]json.RawMessage{"subscription": q(sub), "resource_group": q(rg),
				"scale_set": q(set.Name), "endpoint": q(fake.URL), "share": q(share), "dspool": q(bin)}}, nil
		},
		calls: func() []call {
			var out []call
			for _, c := range fake.Calls() {
				out = append(out, call{c.At, azureKind(c)})
			}
			return out
		},
		start: func(ctx context.Context, bin, tmp string) {
			started = true
			go func() {
				fake.Machines(ctx, set, bin, filepath.Join(tmp, "machines"), os.Environ(), func(err error) { host.Logf("azure: %v", err) })
				close(done)
			}()
		},
		stop: func() {
			if started {
				<-done
			}
			fake.Close()
			os.Setenv("PATH", path)
			os.Unsetenv("SSL_CERT_FILE")
			os.Unsetenv("AZURE_TOKEN_CREDENTIALS")
			os.RemoveAll(dir)
		},
	}, "", nil
}

// azureKind names a request as the report counts it.
func azureKind(c armfake.Call) string {
	what := "scale set"
	switch {
	case strings.Contains(c.Path, "/operations/"):
		what = "operation"
	case strings.HasSuffix(c.Path, "/delete"):
		what = "delete instances"
	case strings.HasSuffix(c.Path, "/virtualMachines"):
		what = "instances"
	}
	return c.Method + " " + what
}
