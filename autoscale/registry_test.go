package autoscale_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

type zoneSettings struct {
	Zone  string `json:"zone,omitempty"`
	Spot  bool   `json:"spot,omitempty"`
	Image string `json:"image,omitempty"`
}

func (s *zoneSettings) Check(prefix string, p *dspool.Pool) error {
	if s.Zone == "" {
		return dspool.Invalid(prefix+"provider.zone", "is required")
	}
	if s.Image == "" {
		s.Image = "dspool:latest"
	}
	return nil
}

func TestRegistryChecksSettings(t *testing.T) {
	reg, err := autoscale.NewRegistry(autoscale.Kind{Name: "local"},
		autoscale.Kind{Name: "cloud", Settings: func() autoscale.Settings { return &zoneSettings{} }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		provider  dspool.ProviderSpec
		wantField string
	}{
		{"unknown provider", dspool.Provider("aws"), "pools[2].provider"},
		{"settings for one that takes none", dspool.ProviderSpec{Name: "local", Settings: map[string]json.RawMessage{"zone": []byte(`"a"`)}}, "pools[2].provider.zone"},
		{"unknown setting", dspool.ProviderSpec{Name: "cloud", Settings: map[string]json.RawMessage{"zone": []byte(`"a"`), "size": []byte(`1`)}}, "pools[2].provider.size"},
		{"wrong type", dspool.ProviderSpec{Name: "cloud", Settings: map[string]json.RawMessage{"zone": []byte(`"a"`), "spot": []byte(`"yes"`)}}, "pools[2].provider.spot"},
		{"the kind's own check", dspool.Provider("cloud"), "pools[2].provider.zone"},
		{"valid", dspool.ProviderSpec{Name: "cloud", Settings: map[string]json.RawMessage{"zone": []byte(`"eu-1"`)}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := &dspool.Pool{Name: "x", Provider: tt.provider}
			err := reg.Check("pools[2].", p)
			if tt.wantField == "" {
				if err != nil {
					t.Fatal(err)
				}
				if string(p.Provider.Settings["image"]) != `"dspool:latest"` {
					t.Errorf("defaults were not written back: %s", p.Provider.Settings)
				}
				b, _ := json.Marshal(p.Provider)
				if string(b) != `{"image":"dspool:latest","name":"cloud","zone":"eu-1"}` {
					t.Errorf("stored as %s", b)
				}
				return
			}
			var e *dspool.Error
			if !errors.As(err, &e) || e.Field != tt.wantField {
				t.Errorf("got %v, want an error naming %s", err, tt.wantField)
			}
		})
	}
	if _, err := autoscale.NewRegistry(autoscale.Kind{Name: "a"}, autoscale.Kind{Name: "a"}); err == nil {
		t.Error("two kinds of one name were registered")
	}
}

func TestProviderSpecReadsNameOrBlock(t *testing.T) {
	for _, tt := range []struct{ in, name, out string }{
		{`"local"`, "local", `"local"`},
		{`{"name": "slurm", "partition": "debug"}`, "slurm", `{"name":"slurm","partition":"debug"}`},
		{`{"name": "static"}`, "static", `"static"`},
	} {
		var s dspool.ProviderSpec
		if err := json.Unmarshal([]byte(tt.in), &s); err != nil || s.Name != tt.name {
			t.Errorf("%s: %+v, %v", tt.in, s, err)
		}
		if b, _ := json.Marshal(s); string(b) != tt.out {
			t.Errorf("%s written back as %s, want %s", tt.in, b, tt.out)
		}
	}
	for _, bad := range []string{`["local"]`, `{"partition": "debug"}`, `{"name": 3}`, `7`} {
		var s dspool.ProviderSpec
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("%s was read as %+v", bad, s)
		}
	}
}

// watcher is a provider that watches its engine: it calls Env.Changed.
type watcher struct {
	engine
	changed func(string)
}

func TestMakeWiresChangedToTheCache(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var w *watcher
	reg, err := autoscale.NewRegistry(autoscale.Kind{Name: "kube",
		New: func(env autoscale.Env) (autoscale.Provider, error) {
			w = &watcher{changed: env.Changed}
			return w, nil
		},
		List: autoscale.ListPolicy{Every: time.Minute, MinGap: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	prov, err := reg.Make("kube", autoscale.Env{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := prov.(*autoscale.Cache); !ok {
		t.Fatalf("Make gave %T, want a Cache around the provider", prov)
	}
	pool := &dspool.Pool{Name: "k"}
	_, _ = prov.List(ctx, pool)
	now = now.Add(2 * time.Second)
	_, _ = prov.List(ctx, pool)
	if got := w.count(); got != 1 {
		t.Fatalf("listed %d times within a fresh minute, want 1", got)
	}
	w.changed("k") // the engine's watch saw a change
	_, _ = prov.List(ctx, pool)
	if got := w.count(); got != 2 {
		t.Fatalf("after Changed the engine was listed %d times in all, want 2", got)
	}
	if p, _ := reg.Make("nosuch", autoscale.Env{}); p != nil {
		t.Errorf("Make of an unknown kind gave %v", p)
	}
}
