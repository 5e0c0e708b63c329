package autoscale

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dspool/dspool"
)

// mean returns the mean of metric m over the samples in (now-window, now],
// and whether the history covers the whole window.
func mean(h []Sample, m int, now time.Time, window time.Duration) (float64, bool) {
	if m < 0 || len(h) == 0 || h[0].At.After(now.Add(-window)) {
		return 0, false
	}
	from := now.Add(-window)
	// Samples are oldest first: find the first inside the window.
	i, _ := slices.BinarySearchFunc(h, from, func(s Sample, t time.Time) int {
		if s.At.After(t) {
			return 1
		}
		return -1
	})
	var sum float64
	n := 0
	for ; i < len(h) && !h[i].At.After(now); i++ {
		sum += h[i].Values[m]
		n++
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

func num(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprint(int64(v))
	}
	return fmt.Sprintf("%.1f", v)
}

// describeWaiting says what waits and why it needs new nodes: "5 queued jobs
// need 1 gpu each and no node has one free".
func describeWaiting(unplaced []*Demand, st *State, gone []bool) string {
	type key struct {
		kind string
		cpus dspool.MilliCPU
		mem  dspool.Bytes
		gpus int
	}
	var keys []key
	count := map[key]int{}
	for _, w := range unplaced {
		k := key{w.Kind, w.CPUs, w.Memory, w.GPUs}
		if count[k] == 0 {
			keys = append(keys, k)
		}
		count[k]++
	}
	var parts []string
	gpu := false
	for _, k := range keys {
		n := count[k]
		what := plural(n, "queued job", "queued jobs")
		verb := "needs"
		if n > 1 {
			verb = "need"
		}
		if k.kind == KindSession {
			what = plural(n, "session", "sessions")
			verb = "waits for"
			if n > 1 {
				verb = "wait for"
			}
		}
		var need string
		if k.gpus > 0 {
			gpu = true
			need = plural(k.gpus, "gpu", "gpus")
		} else {
			need = fmt.Sprintf("%s %s and %s", k.cpus, cpuWord(k.cpus), k.mem)
		}
		if n > 1 {
			need += " each"
		}
		parts = append(parts, fmt.Sprintf("%s %s %s", what, verb, need))
		if len(parts) == 3 && len(keys) > 3 {
			parts = append(parts, fmt.Sprintf("%d more kinds of work wait", len(keys)-3))
			break
		}
	}
	nodes := 0
	for i := range st.Nodes {
		if !gone[i] && st.Nodes[i].State != dspool.NodeLost {
			nodes++
		}
	}
	why := "no node has room"
	switch {
	case nodes == 0:
		why = "the pool has no node"
	case gpu && len(keys) == 1 && keys[0].gpus == 1:
		why = "no node has one free"
	case gpu:
		why = "no node has them free"
	}
	return strings.Join(parts, ", ") + " and " + why
}

func cpuWord(c dspool.MilliCPU) string {
	if c == 1000 {
		return "cpu"
	}
	return "cpus"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
