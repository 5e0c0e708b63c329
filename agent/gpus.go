package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"golang.org/x/sys/unix"
)

// gpuQuery is what the agent asks nvidia-smi of each GPU.
var gpuQuery = []string{"--query-gpu=index,name,uuid,memory.total,pci.bus_id,mig.mode.current", "--format=csv,noheader,nounits"}

// DetectGPUs asks nvidia-smi (the first on PATH) for this machine's GPUs
// and, when any has MIG mode on, for its MIG instances, which then stand
// for it; none when nvidia-smi is absent or fails.
func DetectGPUs(ctx context.Context) []dspool.GPU {
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, gpuQuery...).Output()
	if err != nil {
		return nil
	}
	gpus, migOn := parseGPUQuery(string(out))
	if len(migOn) == 0 {
		return gpus
	}
	list, err := exec.CommandContext(ctx, path, "-L").Output()
	if err != nil {
		return gpus
	}
	return WithMIG(gpus, ParseMIGList(string(list)))
}

// ParseNvidiaSMI parses `nvidia-smi --query-gpu=index,name,uuid,memory.total
// [,pci.bus_id[,mig.mode.current]] --format=csv,noheader,nounits`; lines
// it cannot read are skipped.
func ParseNvidiaSMI(out string) []dspool.GPU {
	gpus, _ := parseGPUQuery(out)
	return gpus
}

// parseGPUQuery parses the query's output and returns, too, the indices
// of the GPUs whose MIG mode is on.
func parseGPUQuery(out string) ([]dspool.GPU, map[int]bool) {
	var gpus []dspool.GPU
	migOn := map[int]bool{}
	seen := map[int]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) < 4 || len(f) > 6 {
			continue
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		idx, err := strconv.Atoi(f[0])
		if err != nil || idx < 0 || idx >= dspool.MaxGPUs || seen[idx] {
			continue
		}
		seen[idx] = true
		mib, _ := strconv.ParseInt(f[3], 10, 64)
		if mib < 0 || mib > 1<<30 {
			mib = 0
		}
		g := dspool.GPU{Index: idx, Name: printable(f[1], 128), UUID: printable(f[2], 128), Memory: dspool.Bytes(mib << 20)}
		if len(f) >= 5 && busID(f[4]) {
			g.BusID = f[4]
		}
		if len(f) == 6 && strings.EqualFold(f[5], "Enabled") {
			migOn[idx] = true
		}
		gpus = append(gpus, g)
	}
	return gpus, migOn
}

// busID reports whether s reads as a PCI address (0000:3B:00.0, or
// 00000000:3B:00.0 as nvidia-smi prints it).
func busID(s string) bool {
	if len(s) < 7 || len(s) > 16 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == ':' || r == '.') {
			return false
		}
	}
	return true
}

// printable keeps s when it is at most n bytes of printable ASCII, the
// alphabet of GPU names and UUIDs; else it keeps what is.
func printable(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0x20 && r < 0x7f && b.Len() < n {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// MIGDevice is a MIG instance `nvidia-smi -L` lists under its GPU.
type MIGDevice struct {
	Parent  int    // the GPU's index
	Profile string // 1g.10gb
	UUID    string // MIG-...
}

// ParseMIGList parses `nvidia-smi -L`:
//
//	GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-...)
//	  MIG 1g.5gb      Device  0: (UUID: MIG-...)
//
// Lines it cannot read are skipped.
func ParseMIGList(out string) []MIGDevice {
	var mig []MIGDevice
	parent := -1
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(t, "GPU "); ok {
			n, _, ok := strings.Cut(rest, ":")
			parent = -1
			if i, err := strconv.Atoi(n); ok && err == nil && i >= 0 && i < dspool.MaxGPUs {
				parent = i
			}
			continue
		}
		rest, ok := strings.CutPrefix(t, "MIG ")
		if !ok || parent < 0 {
			continue
		}
		f := strings.Fields(rest)
		_, uuid, ok := strings.Cut(rest, "(UUID: ")
		uuid, closed := strings.CutSuffix(strings.TrimSpace(uuid), ")")
		if len(f) == 0 || !ok || !closed || !strings.HasPrefix(uuid, "MIG-") || len(uuid) > 128 || strings.ContainsAny(uuid, " ,()") {
			continue
		}
		mig = append(mig, MIGDevice{Parent: parent, Profile: printable(f[0], 32), UUID: printable(uuid, 128)})
	}
	return mig
}

// WithMIG replaces each GPU that has MIG instances by them: each is a unit
// of its own, numbered past the whole GPUs, with the memory its profile
// names (1g.10gb: 10GiB).
func WithMIG(gpus []dspool.GPU, mig []MIGDevice) []dspool.GPU {
	next := 0
	byIndex := map[int]dspool.GPU{}
	for _, g := range gpus {
		byIndex[g.Index] = g
		next = max(next, g.Index+1)
	}
	split := map[int]bool{}
	var units []dspool.GPU
	for _, m := range mig {
		p, ok := byIndex[m.Parent]
		if !ok || next >= dspool.MaxGPUs {
			continue
		}
		split[m.Parent] = true
		units = append(units, dspool.GPU{Index: next, Name: p.Name + " MIG " + m.Profile, UUID: m.UUID,
			Memory: profileMemory(m.Profile), MIG: true, Parent: m.Parent, BusID: p.BusID})
		next++
	}
	var out []dspool.GPU
	for _, g := range gpus {
		if !split[g.Index] {
			out = append(out, g)
		}
	}
	return append(out, units...)
}

// profileMemory reads the memory a MIG profile names ("3g.20gb": 20GiB),
// 0 when it names none.
func profileMemory(p string) dspool.Bytes {
	_, m, ok := strings.Cut(p, ".")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.ToLower(m), "gb"))
	if err != nil || n <= 0 || n > 1<<20 {
		return 0
	}
	return dspool.Bytes(n) << 30
}

// devNum is a character device, as the devices cgroup names it.
type devNum struct{ major, minor uint32 }

func (d devNum) rule() string { return fmt.Sprintf("c %d:%d rwm", d.major, d.minor) }

// findGPUDevices finds the device node of each GPU in dir (/dev): nvidiaN,
// where N is the GPU's minor number that the driver gives in
// /proc/driver/nvidia/gpus/BUS/information, else its index. A MIG
// instance's is its GPU's. A GPU without a character device there gets
// none: the devices cgroup cannot keep jobs from it (the agent says so).
func findGPUDevices(dir string, gpus []dspool.GPU) map[int]devNum {
	out := map[int]devNum{}
	whole := map[int]dspool.GPU{}
	for _, g := range gpus {
		if !g.MIG {
			whole[g.Index] = g
		}
	}
	for _, g := range gpus {
		idx := g.Index
		if g.MIG {
			idx = g.Parent
		}
		minor := idx
		if p, ok := whole[idx]; ok && p.BusID != "" {
			if m, ok := driverMinor(p.BusID); ok {
				minor = m
			}
		} else if g.MIG && g.BusID != "" {
			if m, ok := driverMinor(g.BusID); ok {
				minor = m
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, "nvidia"+strconv.Itoa(minor)), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
			continue
		}
		out[g.Index] = devNum{unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))}
	}
	return out
}

// driverMinor reads the GPU's minor number from the driver's
// /proc/driver/nvidia/gpus/BUS/information ("Device Minor: 0").
func driverMinor(bus string) (int, bool) {
	f, err := os.Open(filepath.Join("/proc/driver/nvidia/gpus", strings.ToLower(bus), "information"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Device Minor:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil && n >= 0
		}
	}
	return 0, false
}

// deniedGPUs are the device rules that keep work holding the GPUs held
// from every other GPU of the node: the devices of the GPUs it does not
// hold, but for those it holds (a MIG instance shares its GPU's device).
func (ag *Agent) deniedGPUs(held []int) []devNum {
	allow := map[devNum]bool{}
	for _, i := range held {
		if d, ok := ag.gpuDevs[i]; ok {
			allow[d] = true
		}
	}
	var deny []devNum
	seen := map[devNum]bool{}
	for _, g := range ag.inv.GPUs {
		if d, ok := ag.gpuDevs[g.Index]; ok && !allow[d] && !seen[d] {
			seen[d] = true
			deny = append(deny, d)
		}
	}
	return deny
}

// gpuEnv is what work holding the GPUs held is told of them:
// CUDA_VISIBLE_DEVICES lists their indices (a MIG instance's UUID), in
// the order of PCI bus ids, the order nvidia-smi numbers them in.
func (ag *Agent) gpuEnv(held []int) []string {
	names := make([]string, 0, len(held))
	for _, i := range held {
		name := strconv.Itoa(i)
		for _, g := range ag.inv.GPUs {
			if g.Index == i && g.MIG && g.UUID != "" {
				name = g.UUID
			}
		}
		names = append(names, name)
	}
	return []string{"CUDA_VISIBLE_DEVICES=" + strings.Join(names, ","), "CUDA_DEVICE_ORDER=PCI_BUS_ID"}
}

// warnGPUIsolation says when work can open GPUs it does not hold: the
// node has GPUs and no devices cgroup, or GPUs without a device node.
func (ag *Agent) warnGPUIsolation() {
	if len(ag.inv.GPUs) == 0 {
		return
	}
	switch {
	case ag.cgroups == nil:
		ag.log.Warn("no cgroups: any job may open every GPU of the node; CUDA_VISIBLE_DEVICES alone tells it which are its")
	case ag.cgroups.v2:
		ag.log.Warn("cgroup v2: the agent does not limit devices there (that takes an eBPF program); any job may open every GPU of the node")
	case !ag.cgroups.devices:
		ag.log.Warn("no cgroup v1 devices controller: any job may open every GPU of the node")
	}
	for _, g := range ag.inv.GPUs {
		if _, ok := ag.gpuDevs[g.Index]; !ok && g.Name != "declared" {
			ag.log.Warn("GPU without a device node: jobs that do not hold it can still reach it", "gpu", g.Index, "dir", ag.cfg.DevDir)
		}
	}
}

// ParseGPUUtil parses `nvidia-smi --query-gpu=index,utilization.gpu
// --format=csv,noheader,nounits`: the indices of the GPUs at work (more
// than 0%), ascending; lines it cannot read are skipped.
func ParseGPUUtil(out string) []int {
	var busy []int
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) != 2 {
			continue
		}
		idx, err1 := strconv.Atoi(strings.TrimSpace(f[0]))
		pct, err2 := strconv.Atoi(strings.TrimSpace(f[1]))
		if err1 != nil || err2 != nil || idx < 0 || idx >= dspool.MaxGPUs || pct <= 0 || slices.Contains(busy, idx) {
			continue
		}
		busy = append(busy, idx)
	}
	slices.Sort(busy)
	return busy
}

// gpuUse is the last sample of which GPUs are at work, for the idle culler
// of sessions that hold GPUs. nvidia-smi runs in the background at most
// every gpuSampleEvery: a heartbeat never waits for it.
type gpuUse struct {
	mu      sync.Mutex
	busy    []int // unit indices (a MIG instance is busy with its GPU)
	sampled time.Time
	running bool
}

const gpuSampleEvery = 10 * time.Second

// busyGPUs returns the last sample, starting a new one when it is old.
func (ag *Agent) busyGPUs() []int {
	u := &ag.gpuUse
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(ag.inv.GPUs) > 0 && !u.running && time.Since(u.sampled) > gpuSampleEvery {
		u.running = true
		go ag.sampleGPUs()
	}
	return u.busy
}

func (ag *Agent) sampleGPUs() {
	var busy []int
	if path, err := exec.LookPath("nvidia-smi"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, path, "--query-gpu=index,utilization.gpu", "--format=csv,noheader,nounits").Output()
		cancel()
		if err == nil {
			whole := ParseGPUUtil(string(out))
			for _, g := range ag.inv.GPUs {
				if slices.Contains(whole, g.Index) && !g.MIG || g.MIG && slices.Contains(whole, g.Parent) {
					busy = append(busy, g.Index)
				}
			}
		}
	}
	u := &ag.gpuUse
	u.mu.Lock()
	u.busy, u.sampled, u.running = busy, time.Now(), false
	u.mu.Unlock()
}
