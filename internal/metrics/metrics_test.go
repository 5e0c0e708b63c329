package metrics_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dspool/dspool/internal/metrics"
)

func TestText(t *testing.T) {
	var r metrics.Registry
	c := r.Counter("jobs_total", "Jobs.\nAll of them.")
	c.Inc()
	c.Add(2.5)
	h := r.Histogram("pass_seconds", "A pass.", metrics.ExponentialBuckets(0.5, 2, 3))
	for _, v := range []float64{0.1, 0.7, 0.9, 5} {
		h.Observe(v)
	}
	r.Gauges(func() []metrics.Family {
		return []metrics.Family{
			{Name: "nodes", Help: "Nodes.", Label: "state", Samples: []metrics.Sample{{LabelValue: `re"ady`, Value: 2}, {LabelValue: "lost", Value: 0}}},
			{Name: "queue", Help: "Queue.", Samples: []metrics.Sample{{Value: 1e6}}},
		}
	})
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	want := `# HELP jobs_total Jobs.\nAll of them.
# TYPE jobs_total counter
jobs_total 3.5
# HELP pass_seconds A pass.
# TYPE pass_seconds histogram
pass_seconds_bucket{le="0.5"} 1
pass_seconds_bucket{le="1"} 3
pass_seconds_bucket{le="2"} 3
pass_seconds_bucket{le="+Inf"} 4
pass_seconds_sum 6.7
pass_seconds_count 4
# HELP nodes Nodes.
# TYPE nodes gauge
nodes{state="re\"ady"} 2
nodes{state="lost"} 0
# HELP queue Queue.
# TYPE queue gauge
queue 1e+06
`
	if got := rec.Body.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := rec.Header().Get("Content-Type"); !strings.HasPrefix(got, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", got)
	}
}

func TestGoRuntime(t *testing.T) {
	var r metrics.Registry
	r.GoRuntime()
	var b strings.Builder
	if _, err := r.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\ngo_goroutines ", "\ngo_memstats_heap_alloc_bytes ", `go_info{version="go`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}
