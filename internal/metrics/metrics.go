// Package metrics keeps a process's counters and histograms and writes
// them, with the gauges it reads at each scrape, in Prometheus's text
// format. It stands in for the Prometheus client library, whose package
// initialisation (a default registry with process and Go collectors,
// protobuf descriptors) every start of the dspool binary paid for, `dspool
// version` included (decision 0038). It does no I/O but to the writer it
// is given.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry is a set of metrics, written in the order they were added.
type Registry struct {
	mu      sync.Mutex
	writers []func(*bufio.Writer)
}

func (r *Registry) add(w func(*bufio.Writer)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writers = append(r.writers, w)
}

// Counter adds a counter.
func (r *Registry) Counter(name, help string) *Counter {
	c := &Counter{}
	r.add(func(w *bufio.Writer) {
		header(w, name, help, "counter")
		sample(w, name, "", c.value())
	})
	return c
}

// Histogram adds a histogram with the given upper bounds of its buckets,
// in increasing order (+Inf is implied).
func (r *Registry) Histogram(name, help string, buckets []float64) *Histogram {
	h := &Histogram{bounds: buckets, counts: make([]uint64, len(buckets))}
	r.add(func(w *bufio.Writer) {
		header(w, name, help, "histogram")
		h.write(w, name)
	})
	return h
}

// Family is a gauge read at scrape time: its samples, each with the value
// of its one label (Label), or one sample without a label when Label is "".
type Family struct {
	Name, Help, Label string
	Samples           []Sample
}

// Sample is one value of a Family.
type Sample struct {
	LabelValue string
	Value      float64
}

// Gauges adds the gauges read returns at each scrape: figures read from
// where they live (a store, a count of connections), not kept here.
func (r *Registry) Gauges(read func() []Family) {
	r.add(func(w *bufio.Writer) {
		for _, f := range read() {
			header(w, f.Name, f.Help, "gauge")
			for _, s := range f.Samples {
				labels := ""
				if f.Label != "" {
					labels = f.Label + `="` + escapeLabel(s.LabelValue) + `"`
				}
				sample(w, f.Name, labels, s.Value)
			}
		}
	})
}

// GoRuntime adds the Go runtime's figures most watched: goroutines, OS
// threads, heap and memory obtained from the system, and garbage
// collections.
func (r *Registry) GoRuntime() {
	r.Gauges(func() []Family {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		threads, _ := runtime.ThreadCreateProfile(nil)
		one := func(name, help string, v float64) Family {
			return Family{Name: name, Help: help, Samples: []Sample{{Value: v}}}
		}
		return []Family{
			one("go_goroutines", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine())),
			one("go_threads", "Number of OS threads created.", float64(threads)),
			one("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", float64(m.HeapAlloc)),
			one("go_memstats_heap_inuse_bytes", "Number of heap bytes in spans in use.", float64(m.HeapInuse)),
			one("go_memstats_sys_bytes", "Number of bytes obtained from the system.", float64(m.Sys)),
			one("go_memstats_gc_cycles", "Number of completed garbage collection cycles.", float64(m.NumGC)),
			{Name: "go_info", Help: "Information about the Go environment.", Label: "version",
				Samples: []Sample{{LabelValue: runtime.Version(), Value: 1}}},
		}
	})
}

// WriteTo writes every metric in the text format.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	writers := r.writers
	r.mu.Unlock()
	cw := &countingWriter{w: w}
	bw := bufio.NewWriter(cw)
	for _, write := range writers {
		write(bw)
	}
	err := bw.Flush()
	return cw.n, err
}

// ServeHTTP answers a scrape.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = r.WriteTo(w)
}

// Counter is a count that only goes up.
type Counter struct{ bits atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.Add(1) }

// Add adds v, which must not be negative.
func (c *Counter) Add(v float64) {
	for {
		old := c.bits.Load()
		if c.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (c *Counter) value() float64 { return math.Float64frombits(c.bits.Load()) }

// Histogram counts observations in buckets.
type Histogram struct {
	bounds []float64
	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative
	count  uint64
	sum    float64
}

// Observe adds one observation.
func (h *Histogram) Observe(v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, b := range h.bounds {
		if v <= b {
			h.counts[i]++
			break
		}
	}
	h.count++
	h.sum += v
}

func (h *Histogram) write(w *bufio.Writer, name string) {
	h.mu.Lock()
	counts, count, sum := append([]uint64(nil), h.counts...), h.count, h.sum
	h.mu.Unlock()
	var cum uint64
	for i, b := range h.bounds {
		cum += counts[i]
		sample(w, name+"_bucket", `le="`+formatFloat(b)+`"`, float64(cum))
	}
	sample(w, name+"_bucket", `le="+Inf"`, float64(count))
	sample(w, name+"_sum", "", sum)
	sample(w, name+"_count", "", float64(count))
}

// ExponentialBuckets returns n bounds, the first start, each factor times
// the one before.
func ExponentialBuckets(start, factor float64, n int) []float64 {
	b := make([]float64, n)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}

func header(w *bufio.Writer, name, help, kind string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, kind)
}

func sample(w *bufio.Writer, name, labels string, v float64) {
	w.WriteString(name)
	if labels != "" {
		w.WriteString("{" + labels + "}")
	}
	w.WriteString(" " + formatFloat(v) + "\n")
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
