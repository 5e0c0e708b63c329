package scheduler_test

import (
	"reflect"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/scheduler"
)

// gpuNode returns node with its GPUs described: names[i] is GPU i's model,
// each with mem GiB.
func gpuNode(id string, mem float64, names ...string) scheduler.Node {
	var free []int
	var gpus []dspool.GPU
	for i, n := range names {
		free = append(free, i)
		gpus = append(gpus, dspool.GPU{Index: i, Name: n, Memory: gib(mem)})
	}
	n := node(id, 8, 32, free...)
	n.GPUs = gpus
	return n
}

func wantGPU(j scheduler.Job, typ string, memGiB float64) scheduler.Job {
	j.GPUWant = dspool.GPUWant{Type: typ, Memory: gib(memGiB)}
	return j
}

func TestPlanGPUKinds(t *testing.T) {
	const a100, t4 = "NVIDIA A100-SXM4-40GB", "Tesla T4"
	tests := []struct {
		name  string
		nodes []scheduler.Node
		jobs  []scheduler.Job
		want  []scheduler.Placement
	}{{
		name:  "a type goes only to a node that has it",
		nodes: []scheduler.Node{gpuNode("t", 16, t4, t4), gpuNode("z", 40, a100, a100)},
		jobs:  []scheduler.Job{wantGPU(job(1, 1, 1, 2), "a100", 0)},
		want:  []scheduler.Placement{{Job: 1, Node: "z", GPUs: []int{0, 1}}},
	}, {
		name:  "only the GPUs of the type count and are held on a mixed node",
		nodes: []scheduler.Node{gpuNode("m", 40, t4, a100, t4, a100)},
		jobs:  []scheduler.Job{wantGPU(job(1, 1, 1, 2), "A100", 0), wantGPU(job(2, 1, 1, 1), "a100", 0), job(3, 1, 1, 2)},
		want:  []scheduler.Placement{{Job: 1, Node: "m", GPUs: []int{1, 3}}, {Job: 3, Node: "m", GPUs: []int{0, 2}}},
	}, {
		name:  "memory below what is asked does not fit; within the slack it does",
		nodes: []scheduler.Node{gpuNode("small", 16, t4), gpuNode("big", 79.6, "NVIDIA H100 80GB HBM3")},
		jobs:  []scheduler.Job{wantGPU(job(1, 1, 1, 1), "", 80), wantGPU(job(2, 1, 1, 1), "", 81)},
		want:  []scheduler.Placement{{Job: 1, Node: "big", GPUs: []int{0}}},
	}, {
		name:  "an unknown type stays queued and does not hold back others",
		nodes: []scheduler.Node{gpuNode("z", 40, a100)},
		jobs:  []scheduler.Job{wantGPU(job(1, 1, 1, 1), "h100", 0), job(2, 1, 1, 1)},
		want:  []scheduler.Placement{{Job: 2, Node: "z", GPUs: []int{0}}},
	}, {
		name:  "a node with no GPUs described fits no typed job",
		nodes: []scheduler.Node{node("bare", 8, 32, 0, 1)},
		jobs:  []scheduler.Job{wantGPU(job(1, 1, 1, 1), "a100", 0)},
	}, {
		name: "a MIG profile is a type",
		nodes: []scheduler.Node{func() scheduler.Node {
			n := node("mig", 8, 32, 0, 1, 2)
			n.GPUs = []dspool.GPU{{Index: 0, Name: a100, Memory: gib(40)},
				{Index: 1, Name: a100 + " MIG 1g.5gb", Memory: gib(4.75), MIG: true}, {Index: 2, Name: a100 + " MIG 3g.20gb", Memory: gib(19.6), MIG: true}}
			return n
		}()},
		jobs: []scheduler.Job{wantGPU(job(1, 1, 1, 1), "3g.20gb", 0), wantGPU(job(2, 1, 1, 1), "1g.5gb", 0)},
		want: []scheduler.Placement{{Job: 1, Node: "mig", GPUs: []int{2}}, {Job: 2, Node: "mig", GPUs: []int{1}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scheduler.Plan(tt.nodes, tt.jobs)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
