package agent

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
)

// MemTotal returns this machine's memory from /proc/meminfo.
func MemTotal() dspool.Bytes {
	return meminfo("MemTotal:")
}

func meminfo(key string) dspool.Bytes {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == key {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return dspool.Bytes(kb * 1024)
		}
	}
	return 0
}

// DetectGPUs asks nvidia-smi for this machine's GPUs; none when it is
// absent or fails.
func DetectGPUs(ctx context.Context) []dspool.GPU {
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--query-gpu=index,name,uuid,memory.total", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return nil
	}
	return ParseNvidiaSMI(string(out))
}

// ParseNvidiaSMI parses `nvidia-smi --query-gpu=index,name,uuid,memory.total
// --format=csv,noheader,nounits`; lines it cannot read are skipped.
func ParseNvidiaSMI(out string) []dspool.GPU {
	var gpus []dspool.GPU
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) != 4 {
			continue
		}
		idx, err := strconv.Atoi(strings.TrimSpace(f[0]))
		if err != nil || idx < 0 || idx > dspool.MaxGPUs {
			continue
		}
		mib, _ := strconv.ParseInt(strings.TrimSpace(f[3]), 10, 64)
		if mib < 0 || mib > 1<<30 {
			mib = 0
		}
		gpus = append(gpus, dspool.GPU{Index: idx, Name: strings.TrimSpace(f[1]), UUID: strings.TrimSpace(f[2]), Memory: dspool.Bytes(mib << 20)})
	}
	return gpus
}

// usage adds the machine's load and memory to u, the room left on the share
// as the users' jobs see it.
func usage(u dspool.Usage) dspool.Usage {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			u.Load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	u.MemUsed = MemTotal() - meminfo("MemAvailable:")
	return u
}

// NumCPU is this machine's cpus.
func NumCPU() dspool.MilliCPU { return dspool.MilliCPU(runtime.NumCPU() * 1000) }
