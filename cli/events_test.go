package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/dspooltest"
)

func TestPoolEventsOutput(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 12, 30, 15, 0, time.UTC)
	for _, ev := range []*dspool.PoolEvent{
		{Pool: dspool.DefaultPool, At: at, Kind: dspool.EventScaleOut, Nodes: []string{"default-1", "default-2"}, Message: "3 jobs wait: adding 2 nodes"},
		{Pool: dspool.DefaultPool, At: at.Add(time.Minute), Kind: dspool.EventProviderError, Message: "quota exceeded\nretrying in 1m"},
	} {
		if err := p.DB.AddPoolEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	out, errs, code := run(t, p, p.Admin, "pool", "events", dspool.DefaultPool)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("exit %d, output:\n%s\nstderr: %s\nwant a header and two rows", code, out, errs)
	}
	want := []string{
		"TIME KIND NODES MESSAGE",
		at.Local().Format("Jan 02 15:04:05") + " scale_out default-1,default-2 3 jobs wait: adding 2 nodes",
		at.Add(time.Minute).Local().Format("Jan 02 15:04:05") + " provider_error - quota exceeded retrying in 1m",
	}
	for i, w := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != w {
			t.Errorf("line %d: got %q, want %q", i, got, w)
		}
	}

	out, _, code = run(t, p, p.Admin, "pool", "events", dspool.DefaultPool, "--limit", "1", "-o", "json")
	var evs []dspool.PoolEvent
	if err := json.Unmarshal([]byte(out), &evs); code != 0 || err != nil || len(evs) != 1 || evs[0].Kind != dspool.EventProviderError || !evs[0].At.Equal(at.Add(time.Minute)) {
		t.Errorf("--limit 1 -o json: exit %d, %q; want an array of the newest event", code, out)
	}

	out, _, code = run(t, p, p.Admin, "pool", "events", dspool.DefaultPool, "--since", "1h", "-o", "json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("--since 1h -o json: exit %d, %q; want an empty array (the events are older)", code, out)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"pool", "events", "nope"}, "pool nope not found"},
		{[]string{"pool", "events", "default", "--limit", "0"}, "--limit: 0 is out of range"},
		{[]string{"pool", "events", "default", "--since", "soon"}, `--since: "soon" is not a span of time`},
	} {
		_, errs, code := run(t, p, p.Admin, tt.args...)
		if code != 1 || !strings.Contains(errs, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and %q", strings.Join(tt.args, " "), code, errs, tt.want)
		}
	}
}
