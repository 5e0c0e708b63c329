package agent_test

import (
	"testing"

	"github.com/dspool/dspool/agent"
)

func TestParseNvidiaSMI(t *testing.T) {
	out := "0, NVIDIA H100 80GB HBM3, GPU-1234, 81559\n1, NVIDIA H100 80GB HBM3, GPU-5678, 81559\nbad line\n"
	gpus := agent.ParseNvidiaSMI(out)
	if len(gpus) != 2 {
		t.Fatalf("got %d gpus, want 2", len(gpus))
	}
	if gpus[1].Index != 1 || gpus[1].UUID != "GPU-5678" || gpus[1].Memory != 81559<<20 || gpus[0].Name != "NVIDIA H100 80GB HBM3" {
		t.Errorf("got %+v", gpus)
	}
}

func FuzzParseNvidiaSMI(f *testing.F) {
	f.Add("0, NVIDIA A100, GPU-1, 40960\n")
	f.Add("x,y,z,w\n-1, a, b, 5\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, g := range agent.ParseNvidiaSMI(s) {
			if g.Index < 0 || g.Memory < 0 {
				t.Fatalf("accepted %+v", g)
			}
		}
	})
}
