package poolfile_test

import (
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/poolfile"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		wantPools int
		wantField string
	}{
		{"list", "pools:\n  - name: gpu\n    node: {cpus: 8, memory: 32GiB, gpus: 1}\n    count: 2\n    work: [batch]\n    setup: |\n      echo hi\n  - name: cpu\n    provider: static\n    node: {cpus: 2, memory: 4G}\n", 2, ""},
		{"single", "name: cpu\nnode: {cpus: 0.5, memory: 512MiB}\n", 1, ""},
		{"malformed", "pools: [\n  - name: x", 0, "file"},
		{"not a mapping", "- a\n- b\n", 0, "file"},
		{"negative cpus", "pools:\n  - name: a\n    node: {cpus: -1, memory: 1G}\n", 0, "pools[0].node.cpus"},
		{"cpus as text", "pools:\n  - name: a\n    node: {cpus: many, memory: 1G}\n", 0, "pools[0].node.cpus"},
		{"bad memory", "name: a\nnode: {cpus: 1, memory: lots}\n", 0, "node.memory"},
		{"unknown field", "name: a\nnode: {cpus: 1, memory: 1G}\nnodes: 3\n", 0, "nodes"},
		{"unknown nested field", "pools:\n  - name: a\n    node: {cpus: 1, memory: 1G, disk: 5}\n", 0, "pools[0].node.disk"},
		{"bad provider", "pools:\n  - name: a\n    provider: aws\n    node: {cpus: 1, memory: 1G}\n", 0, "pools[0].provider"},
		{"settings of a provider that takes none", "pools:\n  - name: a\n    provider: {name: local, zone: x}\n    node: {cpus: 1, memory: 1G}\n", 0, "pools[0].provider.zone"},
		{"provider block without a name", "pools:\n  - name: a\n    provider: {zone: x}\n    node: {cpus: 1, memory: 1G}\n", 0, "pools[0].provider"},
		{"provider as a list", "pools:\n  - name: a\n    provider: [local]\n    node: {cpus: 1, memory: 1G}\n", 0, "pools[0].provider"},
		{"provider block", "pools:\n  - name: a\n    provider: {name: static}\n    node: {cpus: 1, memory: 1G}\n", 1, ""},
		{"duplicate", "pools:\n  - name: a\n    node: {cpus: 1, memory: 1G}\n  - name: a\n    node: {cpus: 1, memory: 1G}\n", 0, "pools[1].name"},
		{"empty list", "pools: []\n", 0, "pools"},
		{"NUL", "name: a\x00\n", 0, "file"},
		{"huge count", "name: a\nnode: {cpus: 1, memory: 1G}\ncount: 99999999999\n", 0, "count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pools, err := poolfile.ParseWith([]byte(tt.yaml), autoscale.Builtin())
			if tt.wantField == "" {
				if err != nil || len(pools) != tt.wantPools {
					t.Fatalf("got %d pools, %v; want %d", len(pools), err, tt.wantPools)
				}
				return
			}
			e, ok := err.(*dspool.Error)
			if !ok || e.Field != tt.wantField {
				t.Errorf("got %v, want an error naming %q", err, tt.wantField)
			}
		})
	}
}

// bomb writes a billion-laughs pool file: twelve lists of nine aliases of
// the list before, each alias written after sep.
func bomb(sep string) string {
	var b strings.Builder
	b.WriteString("a: &a [x, x, x, x, x, x, x, x, x]\n")
	prev := "a"
	for i := 0; i < 12; i++ {
		name := string(rune('b' + i))
		b.WriteString(name + ": &" + name + " [")
		for k := 0; k < 9; k++ {
			if k > 0 {
				b.WriteString(",")
			}
			b.WriteString(sep + "*" + prev)
		}
		b.WriteString("]\n")
		prev = name
	}
	return b.String()
}

func TestAliasBomb(t *testing.T) {
	tests := []struct{ name, sep string }{
		{"space", " "},
		{"tab", "\t"},
		{"carriage return", "\r"},
		{"line break", "\n  "},
		{"nothing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := poolfile.Parse([]byte(bomb(tt.sep)))
			e, ok := err.(*dspool.Error)
			if !ok || e.Field != "file" || !strings.Contains(e.Message, "aliases") {
				t.Errorf("alias bomb: got %v, want a refusal naming the file and its aliases", err)
			}
		})
	}
}

func TestSharedNodeSpec(t *testing.T) {
	yaml := "x-node: &n {cpus: 8, memory: 32GiB}\n"
	_, err := poolfile.Parse([]byte(yaml))
	if e, ok := err.(*dspool.Error); !ok || e.Field != "x-node" {
		t.Fatalf("got %v, want the unknown top-level key named", err)
	}
	yaml = "pools:\n  - name: a\n    node: &n {cpus: 8, memory: 32GiB}\n  - name: b\n    node: *n\n  - name: c\n    node: {<<: *n, gpus: 1}\n"
	pools, err := poolfile.Parse([]byte(yaml))
	if err != nil || len(pools) != 3 || pools[1].Node != pools[0].Node || pools[2].Node.CPUs != pools[0].Node.CPUs || pools[2].Node.GPUs != 1 {
		t.Fatalf("got %v, %v; want three pools sharing one node spec", pools, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("pools:\n  - name: gpu\n    node: {cpus: 8, memory: 32GiB, gpus: 1}\n    count: 2\n"))
	f.Add([]byte("name: cpu\nnode: {cpus: 0.5, memory: 512MiB}\nlabels: {a: b}\nsetup_timeout: 5m\n"))
	f.Add([]byte("a: &a [1]\nb: *a\n"))
	for _, sep := range []string{" ", "\t", "\r", ""} {
		f.Add([]byte(bomb(sep)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pools, err := poolfile.Parse(data)
		if err != nil {
			if e, ok := err.(*dspool.Error); !ok || e.Code != dspool.EInvalid || e.Field == "" {
				t.Fatalf("error %v (%T) does not name a field", err, err)
			}
			return
		}
		for _, p := range pools {
			if !dspool.ValidName(p.Name) || p.Node.CPUs <= 0 || p.Node.Memory <= 0 || p.Count < 0 {
				t.Fatalf("accepted an invalid pool: %+v", p)
			}
		}
	})
}
