package dspool_test

import (
	"errors"
	"testing"

	"github.com/dspool/dspool"
)

func TestGPUWantFits(t *testing.T) {
	h100 := dspool.GPU{Name: "NVIDIA H100 80GB HBM3", Memory: 81559 << 20}
	a100 := dspool.GPU{Name: "NVIDIA A100-SXM4-40GB", Memory: 40960 << 20}
	mig := dspool.GPU{Name: "NVIDIA A100-SXM4-40GB MIG 1g.5gb", Memory: 5 << 30, MIG: true}
	tests := []struct {
		name string
		want dspool.GPUWant
		gpu  dspool.GPU
		fits bool
	}{
		{"a word of the name", dspool.GPUWant{Type: "a100"}, a100, true},
		{"case does not matter", dspool.GPUWant{Type: "H100"}, h100, true},
		{"the whole name", dspool.GPUWant{Type: "nvidia a100-sxm4-40gb"}, a100, true},
		{"part of a word is not a model", dspool.GPUWant{Type: "a10"}, a100, false},
		{"another model", dspool.GPUWant{Type: "h100"}, a100, false},
		{"memory as sold fits what the driver reports", dspool.GPUWant{Memory: 80 << 30}, h100, true},
		{"more memory than the GPU has", dspool.GPUWant{Memory: 48 << 30}, a100, false},
		{"a MIG profile", dspool.GPUWant{Type: "1g.5gb"}, mig, true},
		{"a MIG unit is too small for whole-GPU memory", dspool.GPUWant{Type: "a100", Memory: 40 << 30}, mig, false},
	}
	for _, tt := range tests {
		if got := tt.want.Fits(tt.gpu); got != tt.fits {
			t.Errorf("%s: %+v fits %s: got %v, want %v", tt.name, tt.want, tt.gpu.Name, got, tt.fits)
		}
	}
}

func TestJobSpecGPUWant(t *testing.T) {
	for _, tt := range []struct {
		name  string
		spec  dspool.JobSpec
		field string
	}{
		{"a type without GPUs", dspool.JobSpec{GPUType: "a100"}, "gpu_type"},
		{"memory without GPUs", dspool.JobSpec{GPUMemory: 40 << 30}, "gpu_memory"},
		{"a type with a shell character", dspool.JobSpec{GPUs: 1, GPUType: "a100$(id)"}, "gpu_type"},
		{"memory without its unit", dspool.JobSpec{GPUs: 1, GPUMemory: 40}, "gpu_memory"},
		{"negative memory", dspool.JobSpec{GPUs: 1, GPUMemory: -1}, "gpu_memory"},
		{"fine", dspool.JobSpec{GPUs: 2, GPUType: " a100 ", GPUMemory: 40 << 30}, ""},
	} {
		tt.spec.Command = []string{"true"}
		err := tt.spec.Normalize()
		var e *dspool.Error
		got := ""
		if errors.As(err, &e) {
			got = e.Field
		}
		if got != tt.field || err != nil && got == "" {
			t.Errorf("%s: error %v names %q, want %q", tt.name, err, got, tt.field)
		}
		if err == nil && tt.spec.GPUType != "a100" {
			t.Errorf("%s: gpu_type normalized to %q, want a100", tt.name, tt.spec.GPUType)
		}
	}
}
