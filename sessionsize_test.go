package dspool_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dspool/dspool"
)

func gpuPool(profiles ...dspool.SessionSize) *dspool.Pool {
	return &dspool.Pool{Name: "gpu", Node: dspool.NodeSize{CPUs: 16000, Memory: 128 << 30, GPUs: 2},
		Sessions: &dspool.SessionSpec{CPUs: 1000, Memory: 2 << 30, Profiles: profiles}}
}

func field(err error) string {
	var e *dspool.Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

func TestSessionProfiles(t *testing.T) {
	for _, tt := range []struct {
		name    string
		profile dspool.SessionSize
		field   string
	}{
		{"fits a node", dspool.SessionSize{Name: "large", CPUs: 16000, Memory: 64 << 30, GPUs: 2, GPUType: "a100"}, ""},
		{"more cpus than a node", dspool.SessionSize{Name: "huge", CPUs: 32000}, "sessions.profiles[0].cpus"},
		{"more GPUs than a node", dspool.SessionSize{Name: "huge", GPUs: 3}, "sessions.profiles[0].gpus"},
		{"a GPU type without GPUs", dspool.SessionSize{Name: "t", GPUType: "a100"}, "sessions.profiles[0].gpu_type"},
		{"a name that reads as a size", dspool.SessionSize{Name: "8cpu"}, "sessions.profiles[0].name"},
		{"a name that is no name", dspool.SessionSize{Name: "Big One"}, "sessions.profiles[0].name"},
		{"a time under a second", dspool.SessionSize{Name: "quick", Time: dspool.Duration(time.Millisecond)}, "sessions.profiles[0].time"},
	} {
		p := gpuPool(tt.profile)
		if got := field(p.Normalize("")); got != tt.field {
			t.Errorf("%s: error names %q, want %q", tt.name, got, tt.field)
		}
	}
	p := gpuPool(dspool.SessionSize{Name: "a"}, dspool.SessionSize{Name: "a"})
	if got := field(p.Normalize("")); got != "sessions.profiles[1].name" {
		t.Errorf("two profiles of one name: error names %q, want sessions.profiles[1].name", got)
	}
}

func TestPoolSessionSize(t *testing.T) {
	p := gpuPool(dspool.SessionSize{Name: "small", Memory: 4 << 30})
	if err := p.Normalize(""); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		size  string
		want  dspool.SessionSize
		field string
	}{
		{"", dspool.SessionSize{CPUs: 1000, Memory: 2 << 30}, ""},
		{"small", dspool.SessionSize{Name: "small", CPUs: 1000, Memory: 4 << 30}, ""},
		{"8cpu-64gib-1gpu-4h", dspool.SessionSize{CPUs: 8000, Memory: 64 << 30, GPUs: 1, Time: dspool.Duration(4 * time.Hour)}, ""},
		{"2gpu", dspool.SessionSize{CPUs: 1000, Memory: 2 << 30, GPUs: 2}, ""},
		{"large", dspool.SessionSize{}, "size"},
		{"32cpu", dspool.SessionSize{}, "size"},
		{"1cpu-1cpu", dspool.SessionSize{}, "size"},
		{"30s", dspool.SessionSize{}, "size"},
	} {
		got, err := p.SessionSize(tt.size)
		if field(err) != tt.field || err == nil && got != tt.want {
			t.Errorf("SessionSize(%q) = %+v, %v; want %+v, error naming %q", tt.size, got, err, tt.want, tt.field)
		}
	}
	z, _ := p.SessionSize("8cpu-64gib-1gpu-4h")
	if back, _ := p.SessionSize(z.Key()); back != z {
		t.Errorf("the key %q of %+v reads back as %+v", z.Key(), z, back)
	}
}
