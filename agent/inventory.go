package agent

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

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
