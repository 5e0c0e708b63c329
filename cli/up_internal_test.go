package cli

import (
	"github.com/dspool/dspool"
	"os"
	"path/filepath"
	"testing"
)

func TestDefaultShareDir(t *testing.T) {
	tests := []struct {
		name       string
		legacy     []string // files in DATA/share
		root       bool
		want       string // relative to the temp dir, or absolute
		wantInside bool
	}{
		{"new installation", nil, false, "data-share", false},
		{"new installation as root", nil, true, "/srv/dspool", false},
		{"empty share inside, from an earlier start", []string{}, false, "data-share", false},
		{"homes inside, from an earlier dspool", []string{"home"}, false, "data/share", true},
		{"homes inside, as root", []string{"home"}, true, "data/share", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			if tt.legacy != nil {
				if err := os.MkdirAll(filepath.Join(data, "share"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tt.legacy {
				if err := os.Mkdir(filepath.Join(data, "share", f), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			want := tt.want
			if !filepath.IsAbs(want) {
				want = filepath.Join(dir, want)
			}
			got, inside := defaultShareDir(data, tt.root)
			if got != want || inside != tt.wantInside {
				t.Errorf("got %s, inside %v; want %s, inside %v", got, inside, want, tt.wantInside)
			}
		})
	}
}

func TestMachineSizes(t *testing.T) {
	m := machine{cpus: 4000, mem: 8 << 30}
	local := func(count int, size dspool.NodeSize) *dspool.Pool {
		return &dspool.Pool{Name: "p", Provider: dspool.Provider(dspool.ProviderLocal), Count: count, Node: size}
	}
	tests := []struct {
		name      string
		nodes     int
		wantShare dspool.NodeSize
		pools     []*dspool.Pool
		oversized bool
	}{
		{"one node is the machine", 1, dspool.NodeSize{CPUs: 4000, Memory: 8 << 30}, nil, false},
		{"two nodes halve it", 2, dspool.NodeSize{CPUs: 2000, Memory: 4 << 30}, []*dspool.Pool{local(2, m.share(2))}, false},
		{"at least one cpu", 8, dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}, []*dspool.Pool{local(8, m.share(8))}, true},
		{"a store of one node's size with two nodes", 2, dspool.NodeSize{CPUs: 2000, Memory: 4 << 30}, []*dspool.Pool{local(2, m.share(1))}, true},
		{"other providers do not count", 1, m.share(1), []*dspool.Pool{local(1, m.share(1)), {Name: "s", Provider: dspool.Provider("static"), Count: 9, Node: m.share(1)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.share(tt.nodes); got != tt.wantShare {
				t.Errorf("share(%d) = %+v, want %+v", tt.nodes, got, tt.wantShare)
			}
			if !m.upSized(m.share(tt.nodes)) {
				t.Errorf("upSized(share(%d)) = false, want true", tt.nodes)
			}
			if got := m.oversized(tt.pools) != ""; got != tt.oversized {
				t.Errorf("oversized = %q, want it said: %v", m.oversized(tt.pools), tt.oversized)
			}
		})
	}
	if m.upSized(dspool.NodeSize{CPUs: 3000, Memory: 5 << 30}) {
		t.Errorf("a size set with pool apply counted as up's")
	}
}

func TestFreeUIDBase(t *testing.T) {
	tests := []struct {
		name  string
		accts []dspool.HostAccount
		want  int
	}{
		{"none", nil, 20000},
		{"another store at 20000", []dspool.HostAccount{{Name: "alice", ID: 20000}, {Name: "bob", ID: 20001}}, 30000},
		{"an account past the range", []dspool.HostAccount{{Name: "x", ID: 30990}}, 20000},
		{"in the margin", []dspool.HostAccount{{Name: "x", ID: 20900}}, 30000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := freeUIDBase(tt.accts, 0); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}
