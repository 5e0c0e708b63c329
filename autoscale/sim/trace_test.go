package sim_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale/sim"
)

func TestParseTrace(t *testing.T) {
	const h = sim.TraceHeader + "\n"
	monday := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		in    string
		start time.Time
		want  []sim.Arrival
	}{
		{name: "offsets from the default start", in: h + "0s,job,batch,ana,2,4GiB,,10m\n90s,session,lab,bruno,,,,1h\n",
			start: monday, want: []sim.Arrival{
				{At: monday, Kind: "job", Pool: "batch", User: "ana", CPUs: 2000, Memory: 4 << 30, Duration: 10 * time.Minute, Line: 2},
				{At: monday.Add(90 * time.Second), Kind: "session", Pool: "lab", User: "bruno", Duration: time.Hour, Line: 3}}},
		{name: "start line, comments, blank lines, CRLF, spaces", in: "# a comment\r\n# start: 2026-06-01T00:00:00+01:00\r\n\r\n" + h +
			"# another\n8h30m , job , gpu , ana , 0.5 , 512MiB , 1 , 1h30m\r\n",
			start: time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC), want: []sim.Arrival{
				{At: time.Date(2026, 6, 1, 7, 30, 0, 0, time.UTC), Kind: "job", Pool: "gpu", User: "ana", CPUs: 500, Memory: 512 << 20, GPUs: 1,
					Duration: 90 * time.Minute, Line: 6}}},
		{name: "times start at the first", in: h + "2026-06-01T08:00:00+01:00,job,batch,ana,1,1G,0,1s\n2026-06-01T07:00:00Z,job,batch,ana,1,1G,,1s\n",
			start: time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC), want: []sim.Arrival{
				{At: time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC), Kind: "job", Pool: "batch", User: "ana", CPUs: 1000, Memory: 1e9, Duration: time.Second, Line: 2},
				{At: time.Date(2026, 6, 1, 7, 0, 0, 0, time.UTC), Kind: "job", Pool: "batch", User: "ana", CPUs: 1000, Memory: 1e9, Duration: time.Second, Line: 3}}},
		{name: "no arrivals", in: h, start: monday},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sim.ParseTrace(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !got.Start.Equal(tt.start) {
				t.Errorf("start: got %s, want %s", got.Start, tt.start)
			}
			if len(got.Arrivals) != len(tt.want) {
				t.Fatalf("got %d arrivals, want %d: %+v", len(got.Arrivals), len(tt.want), got.Arrivals)
			}
			for i := range tt.want {
				g, w := got.Arrivals[i], tt.want[i]
				if !g.At.Equal(w.At) {
					t.Errorf("arrival %d at: got %s, want %s", i, g.At, w.At)
				}
				g.At, w.At = time.Time{}, time.Time{}
				if g != w {
					t.Errorf("arrival %d: got %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestParseTraceErrors(t *testing.T) {
	const h = sim.TraceHeader + "\n"
	const ok = "0s,job,batch,ana,1,1GiB,,1m\n"
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "trace: has no header line"},
		{"wrong header", "at,kind,pool\n", "line 1: header: "},
		{"fields", h + "0s,job,batch,ana,1,1GiB,1m\n", "line 2: has 7 fields: want 8"},
		{"at", h + "yesterday,job,batch,ana,1,1GiB,,1m\n", `line 2: at: "yesterday" is neither`},
		{"at fraction", h + "1.5s,job,batch,ana,1,1GiB,,1m\n", "line 2: at: 1.5s has a fraction of a second"},
		{"at time fraction", h + "2026-01-05T00:00:00.5Z,job,batch,ana,1,1GiB,,1m\n", "line 2: at: 2026-01-05T00:00:00.5Z has a fraction"},
		{"at negative", h + "-5s,job,batch,ana,1,1GiB,,1m\n", "line 2: at: -5s is out of range"},
		{"at bad time", h + "2026-13-05T00:00:00Z,job,batch,ana,1,1GiB,,1m\n", "line 2: at: \"2026-13-05T00:00:00Z\" is not an RFC 3339 time"},
		{"order", h + "10s,job,batch,ana,1,1GiB,,1m\n5s,job,batch,ana,1,1GiB,,1m\n", "line 3: at: 2026-01-05T00:00:05Z is before the line above's"},
		{"mixed", h + ok + "2026-01-05T00:00:00Z,job,batch,ana,1,1GiB,,1m\n", "line 3: at: the trace mixes times and offsets"},
		{"before start", "# start: 2026-01-06T00:00:00Z\n" + h + "2026-01-05T00:00:00Z,job,batch,ana,1,1GiB,,1m\n", "line 3: at: 2026-01-05T00:00:00Z is before the trace's start"},
		{"start twice", "# start: 2026-01-06T00:00:00Z\n# start: 2026-01-06T00:00:00Z\n" + h, "line 2: start: the start line must come once"},
		{"start after header", h + "# start: 2026-01-06T00:00:00Z\n", "line 2: start: the start line must come once, before the header"},
		{"kind", h + "0s,task,batch,ana,1,1GiB,,1m\n", `line 2: kind: "task" is not a kind of work`},
		{"pool", h + "0s,job,Batch,ana,1,1GiB,,1m\n", `line 2: pool: "Batch" is not a valid name`},
		{"user", h + "0s,job,batch,,1,1GiB,,1m\n", `line 2: user: "" is not a valid name`},
		{"cpus", h + "0s,job,batch,ana,lots,1GiB,,1m\n", `line 2: cpus: "lots" is not a number of cpus`},
		{"cpus zero", h + "0s,job,batch,ana,0,1GiB,,1m\n", "line 2: cpus: a job needs more than 0 cpus"},
		{"memory", h + "0s,job,batch,ana,1,1 parsec,,1m\n", `line 2: memory: "1 parsec" is not a size`},
		{"memory empty", h + "0s,job,batch,ana,1,,,1m\n", `line 2: memory: "" is not a size`},
		{"gpus", h + "0s,job,batch,ana,1,1GiB,-1,1m\n", `line 2: gpus: "-1" is not a number of gpus`},
		{"session cpus", h + "0s,session,lab,ana,2,,,1m\n", `line 2: cpus: is "2": leave it empty for a session`},
		{"session gpus", h + "0s,session,lab,ana,,,1,1m\n", `line 2: gpus: is "1": leave it empty for a session`},
		{"duration", h + "0s,job,batch,ana,1,1GiB,,soon\n", `line 2: duration: "soon" is not a duration`},
		{"duration zero", h + "0s,job,batch,ana,1,1GiB,,0s\n", "line 2: duration: 0s is out of range: give 1s to 720h0m0s"},
		{"duration fraction", h + "0s,job,batch,ana,1,1GiB,,1500ms\n", "line 2: duration: 1500ms has a fraction of a second"},
		{"long line", h + strings.Repeat("x", 2000) + "\n", "line 2: is longer than 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sim.ParseTrace(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
			if dspool.ErrorCode(err) != dspool.EInvalid {
				t.Errorf("code %q, want invalid", dspool.ErrorCode(err))
			}
		})
	}
}

// FuzzParseTrace checks that the parser never panics, and that what it
// accepts writes out and reads back the same.
func FuzzParseTrace(f *testing.F) {
	week, err := os.ReadFile("testdata/team-week.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(week[:2000]))
	f.Add(sim.TraceHeader + "\n0s,job,batch,ana,1,1GiB,,1m\n90s,session,lab,bruno,,,,1h\n")
	f.Add("# start: 2026-06-01T00:00:00+01:00\n" + sim.TraceHeader + "\n2026-06-01T08:00:00+01:00,job,gpu,ana,0.5,512MiB,1,1h30m\n")
	f.Add(sim.TraceHeader + "\n1.5s,job,batch,ana,1e3,1.5GiB,,1m\n")
	f.Fuzz(func(t *testing.T, in string) {
		tr, err := sim.ParseTrace(strings.NewReader(in))
		if err != nil {
			if dspool.ErrorCode(err) != dspool.EInvalid {
				t.Fatalf("error %v has code %q, want invalid", err, dspool.ErrorCode(err))
			}
			return
		}
		var b bytes.Buffer
		if err := sim.WriteTrace(&b, tr); err != nil {
			t.Fatal(err)
		}
		again, err := sim.ParseTrace(&b)
		if err != nil {
			t.Fatalf("reading back what was written: %v\n%s", err, b.String())
		}
		if !again.Start.Equal(tr.Start) || len(again.Arrivals) != len(tr.Arrivals) {
			t.Fatalf("start or count changed: %s %d, then %s %d", tr.Start, len(tr.Arrivals), again.Start, len(again.Arrivals))
		}
		for i := range tr.Arrivals {
			x, y := tr.Arrivals[i], again.Arrivals[i]
			if !x.At.Equal(y.At) {
				t.Fatalf("arrival %d at %s, then %s", i, x.At, y.At)
			}
			x.At, y.At, x.Line, y.Line = time.Time{}, time.Time{}, 0, 0
			if x != y {
				t.Fatalf("arrival %d %+v, then %+v", i, x, y)
			}
		}
	})
}
