package dspool_test

import (
	"testing"

	"github.com/dspool/dspool"
)

func TestPlural(t *testing.T) {
	for _, tt := range []struct {
		name   string
		amount any
		unit   string
		want   string
	}{
		{"one", 1, "gpu", "1 gpu"},
		{"none", 0, "gpu", "0 gpus"},
		{"several", int64(8), "node", "8 nodes"},
		{"one cpu", dspool.MilliCPU(1000), "cpu", "1 cpu"},
		{"half a cpu", dspool.MilliCPU(500), "cpu", "0.5 cpus"},
	} {
		if got := dspool.Plural(tt.amount, tt.unit); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}
