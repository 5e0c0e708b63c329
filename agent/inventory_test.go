package agent_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dspool/dspool"
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

func readTestdata(t testing.TB, name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestParseMIG reads the recorded output of a node whose GPU 0 is split
// into three MIG instances: they stand for it, each a unit of its own
// with its UUID and the memory its profile names; GPU 1 stays whole.
func TestParseMIG(t *testing.T) {
	gpus := agent.ParseNvidiaSMI(readTestdata(t, "a100-mig.query"))
	if len(gpus) != 2 || gpus[0].BusID != "00000000:07:00.0" || gpus[1].Memory != 40960<<20 {
		t.Fatalf("query: got %+v", gpus)
	}
	mig := agent.ParseMIGList(readTestdata(t, "a100-mig.list"))
	if len(mig) != 3 || mig[0].Parent != 0 || mig[2].Profile != "1g.5gb" || mig[1].UUID != "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb" {
		t.Fatalf("-L: got %+v", mig)
	}
	units := agent.WithMIG(gpus, mig)
	want := []dspool.GPU{
		{Index: 1, Name: "NVIDIA A100-SXM4-40GB", UUID: "GPU-b2a3f0a9-6c1e-7d4e-8a0f-2f6f3c1e9d10", Memory: 40960 << 20, BusID: "00000000:0F:00.0"},
		{Index: 2, Name: "NVIDIA A100-SXM4-40GB MIG 3g.20gb", UUID: "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", Memory: 20 << 30, MIG: true, Parent: 0, BusID: "00000000:07:00.0"},
		{Index: 3, Name: "NVIDIA A100-SXM4-40GB MIG 2g.10gb", UUID: "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb", Memory: 10 << 30, MIG: true, Parent: 0, BusID: "00000000:07:00.0"},
		{Index: 4, Name: "NVIDIA A100-SXM4-40GB MIG 1g.5gb", UUID: "MIG-1e9a0c4b-5f6d-5a7e-8b9c-0d1e2f3a4b5c", Memory: 5 << 30, MIG: true, Parent: 0, BusID: "00000000:07:00.0"},
	}
	if !reflect.DeepEqual(units, want) {
		t.Errorf("got  %+v\nwant %+v", units, want)
	}
	if w := (dspool.GPUWant{Type: "2g.10gb"}); w.CountFits(units) != 1 {
		t.Errorf("--gpu-type 2g.10gb fits %d units, want 1", w.CountFits(units))
	}
}

// FuzzParseNvidiaSMIOutput feeds nvidia-smi's two outputs, as a hostile or
// broken nvidia-smi could print them: no panic, and every unit is one a
// job can be given (an index in range and unique, printable names,
// memory not negative, a MIG unit of a GPU that was listed).
func FuzzParseNvidiaSMIOutput(f *testing.F) {
	f.Add(readTestdata(f, "a100-mig.query"), readTestdata(f, "a100-mig.list"))
	f.Add("0, Tesla T4, GPU-1, 15360, 00000000:3B:00.0, [N/A]\n", "GPU 0: Tesla T4 (UUID: GPU-1)\n")
	f.Add("0,a,b,-5,,Enabled\n0,a,b,5\n", "GPU 0:\n MIG (UUID: MIG-)\nGPU 999: x\n  MIG 1g.99999999999gb Device 0: (UUID: MIG-x)\n")
	f.Fuzz(func(t *testing.T, query, list string) {
		gpus := agent.ParseNvidiaSMI(query)
		units := agent.WithMIG(gpus, agent.ParseMIGList(list))
		seen := map[int]bool{}
		whole := map[int]bool{}
		for _, g := range gpus {
			whole[g.Index] = true
		}
		for _, g := range units {
			if g.Index < 0 || g.Index >= dspool.MaxGPUs || seen[g.Index] || g.Memory < 0 {
				t.Fatalf("unit %+v: want a unique index in [0, %d) and memory not negative", g, dspool.MaxGPUs)
			}
			seen[g.Index] = true
			for _, r := range g.Name + g.UUID + g.BusID {
				if r < 0x20 || r >= 0x7f {
					t.Fatalf("unit %+v: a character %q that is not printable ASCII", g, r)
				}
			}
			if g.MIG && (!whole[g.Parent] || !strings.HasPrefix(g.UUID, "MIG-")) {
				t.Fatalf("MIG unit %+v of no listed GPU, or without a MIG UUID", g)
			}
		}
	})
}
