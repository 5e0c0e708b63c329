package e2e_test

import (
	"bytes"
	"cmp"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestVersionStartsCheaply runs `dspool version` with the runtime's trace
// of package initialisation and checks that what the packages do at init
// stays small: the binary links every package, so work one does at init
// (a regexp compiled, a table built, a dependency's registry) is paid for
// by each start of every command (decision 0038). It counts allocations,
// not time, so that a loaded machine cannot fail it.
func TestVersionStartsCheaply(t *testing.T) {
	cmd := exec.Command(bin, "version")
	cmd.Env = append(os.Environ(), "GODEBUG="+strings.TrimPrefix(os.Getenv("GODEBUG")+",inittrace=1", ","))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dspool version: %v: %s", err, stderr.String())
	}
	inits := parseInitTrace(t, stderr.String())
	if len(inits) == 0 {
		t.Fatalf("no init trace in: %s", stderr.String())
	}
	// The whole start: 7,490 allocations and 790 KB before the Prometheus
	// client left and the patterns were compiled lazily, about 2,000 and
	// 270 KB after. The Kubernetes provider's first version, on k8s.io/api
	// and apimachinery, added about 3,200 and 330 KB, and 1 ms of CPU to
	// every start; its own types (provider/kubernetes/kapi) do not.
	const maxAllocs, maxBytes = 3000, 384 << 10
	// One of dspool's packages: a pattern with a counted repetition
	// ({0,62}) compiled at init made 720 allocations and 51 KB.
	const ownAllocs, ownBytes = 256, 32 << 10
	var allocs, size int
	for _, in := range inits {
		allocs += in.allocs
		size += in.bytes
		if strings.HasPrefix(in.pkg, "github.com/dspool/dspool") && (in.allocs > ownAllocs || in.bytes > ownBytes) {
			t.Errorf("package %s allocates %d times (%d bytes) at init, more than %d (%d): make the work lazy (sync.OnceValue, lazyregexp)",
				in.pkg, in.allocs, in.bytes, ownAllocs, ownBytes)
		}
	}
	if allocs > maxAllocs || size > maxBytes {
		t.Errorf("dspool version: package initialisation allocates %d times (%d bytes), more than %d (%d); the largest: %s",
			allocs, size, maxAllocs, maxBytes, largestInits(inits, 5))
	}
	t.Logf("package initialisation: %d packages, %d allocations, %d bytes", len(inits), allocs, size)
}

type initTrace struct {
	pkg           string
	bytes, allocs int
}

// parseInitTrace reads GODEBUG=inittrace=1 lines:
// "init PKG @0.12 ms, 0.01 ms clock, 176 bytes, 3 allocs".
func parseInitTrace(t *testing.T, s string) []initTrace {
	t.Helper()
	var out []initTrace
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) != 11 || f[0] != "init" || f[8] != "bytes," || f[10] != "allocs" {
			continue
		}
		b, err1 := strconv.Atoi(f[7])
		a, err2 := strconv.Atoi(f[9])
		if err1 != nil || err2 != nil {
			t.Fatalf("unreadable init trace line %q", line)
		}
		out = append(out, initTrace{pkg: f[1], bytes: b, allocs: a})
	}
	return out
}

func largestInits(inits []initTrace, n int) string {
	sorted := slices.SortedFunc(slices.Values(inits), func(a, b initTrace) int { return cmp.Compare(b.bytes, a.bytes) })
	var parts []string
	for _, in := range sorted[:min(n, len(sorted))] {
		parts = append(parts, in.pkg+" "+strconv.Itoa(in.bytes)+" B")
	}
	return strings.Join(parts, ", ")
}
