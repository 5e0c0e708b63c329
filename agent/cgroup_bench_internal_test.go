package agent

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// BenchmarkAttemptCgroup is the part of a job's start that the devices
// cgroup adds to: make the attempt's cgroups, start a process in them, wait
// for it, remove them. "devices" adds the devices hierarchy and the rules
// that deny a node's other 7 GPUs, as a 1-GPU job on an 8-GPU node gets.
// It needs root and cgroup v1:
//
//	go test ./agent -run XXX -bench AttemptCgroup -benchtime 200x
func BenchmarkAttemptCgroup(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to make cgroups")
	}
	c, err := detectCgroups(fmt.Sprintf("bench-%d", os.Getpid()))
	if err != nil || c.v2 || !c.devices {
		b.Skipf("needs the cgroup v1 memory, cpu, pids and devices hierarchies (%v)", err)
	}
	b.Cleanup(c.removeAll)
	var deny []devNum
	for minor := uint32(1); minor < 8; minor++ {
		deny = append(deny, devNum{195, minor}) // /dev/nvidia1..7
	}
	for _, tc := range []struct {
		name    string
		devices bool
		deny    []devNum
	}{{"without devices", false, nil}, {"devices, 1 GPU denied", true, deny[:1]}, {"devices, 7 GPUs denied", true, deny}} {
		b.Run(tc.name, func(b *testing.B) {
			c.devices = tc.devices
			for i := 0; i < b.N; i++ {
				g, err := c.create(fmt.Sprintf("a%d", i), 1000, 256<<20, 64, tc.deny)
				if err != nil {
					b.Fatal(err)
				}
				cmd := exec.Command("/bin/true")
				if err := spawn(cmd, g); err != nil {
					b.Fatal(err)
				}
				if err := cmd.Wait(); err != nil {
					b.Fatal(err)
				}
				g.remove()
			}
		})
	}
	c.devices = true
}
