package agent

import (
	"reflect"
	"testing"

	"github.com/dspool/dspool"
)

// A node of two GPUs, GPU 0 split into two MIG instances (units 2 and 3):
// work is told of a MIG instance by its UUID, and a device rule denies a
// GPU's device node only to work that holds none of its units.
func TestGPUEnvAndRules(t *testing.T) {
	ag := &Agent{inv: dspool.Inventory{GPUs: []dspool.GPU{
		{Index: 1, Name: "NVIDIA A100-SXM4-40GB"},
		{Index: 2, Name: "NVIDIA A100-SXM4-40GB MIG 3g.20gb", UUID: "MIG-aaaa", MIG: true, Parent: 0},
		{Index: 3, Name: "NVIDIA A100-SXM4-40GB MIG 3g.20gb", UUID: "MIG-bbbb", MIG: true, Parent: 0},
	}}, gpuDevs: map[int]devNum{1: {195, 1}, 2: {195, 0}, 3: {195, 0}}}
	for _, tt := range []struct {
		held []int
		env  []string
		deny []devNum
	}{
		{nil, []string{"CUDA_VISIBLE_DEVICES=", "CUDA_DEVICE_ORDER=PCI_BUS_ID"}, []devNum{{195, 1}, {195, 0}}},
		{[]int{1}, []string{"CUDA_VISIBLE_DEVICES=1", "CUDA_DEVICE_ORDER=PCI_BUS_ID"}, []devNum{{195, 0}}},
		{[]int{3}, []string{"CUDA_VISIBLE_DEVICES=MIG-bbbb", "CUDA_DEVICE_ORDER=PCI_BUS_ID"}, []devNum{{195, 1}}},
		{[]int{1, 2}, []string{"CUDA_VISIBLE_DEVICES=1,MIG-aaaa", "CUDA_DEVICE_ORDER=PCI_BUS_ID"}, nil},
	} {
		if got := ag.gpuEnv(tt.held); !reflect.DeepEqual(got, tt.env) {
			t.Errorf("holding %v: env %q, want %q", tt.held, got, tt.env)
		}
		if got := ag.deniedGPUs(tt.held); !reflect.DeepEqual(got, tt.deny) {
			t.Errorf("holding %v: denied %v, want %v", tt.held, got, tt.deny)
		}
	}
	if got := (devNum{195, 3}).rule(); got != "c 195:3 rwm" {
		t.Errorf("rule: got %q", got)
	}
}
