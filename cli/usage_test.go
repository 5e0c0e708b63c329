package cli_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/cli"
	"github.com/dspool/dspool/dspooltest"
)

// run runs the CLI against p as the user of client c and returns what it
// printed and its exit code.
func run(t *testing.T, p *dspooltest.Pool, c *api.Client, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	env := map[string]string{
		"DSPOOL_SERVER": p.URL, "DSPOOL_TOKEN": c.Token,
		"DSPOOL_CONFIG": filepath.Join(t.TempDir(), "no-login.json"),
	}
	var out, errb bytes.Buffer
	app := &cli.App{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}
	code = app.Run(context.Background(), args)
	return out.String(), errb.String(), code
}

func TestUsageOutput(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 47000})
	ctx := context.Background()
	if _, err := p.Admin.ApplyPools(ctx, []*dspool.Pool{{Name: dspool.DefaultPool, Provider: dspool.Provider(dspool.ProviderStatic),
		Node: dspool.NodeSize{CPUs: 2000, Memory: 2 << 30}, Count: 1, PricePerNodeHour: 3.5}}); err != nil {
		t.Fatal(err)
	}
	j, err := p.Admin.SubmitJob(ctx, &dspool.JobSpec{CPUs: 2000, Command: []string{"sleep", "0.1"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if j = p.Wait(p.Admin, j.ID); j.State != dspool.JobSucceeded {
		t.Fatalf("job: %s (%s), want succeeded", j.State, j.Message)
	}
	admin := j.User

	t.Run("table by user", func(t *testing.T) {
		out, errs, code := run(t, p, p.Admin, "usage")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 2 {
			t.Fatalf("exit %d, output:\n%s\nstderr: %s\nwant a header and one row", code, out, errs)
		}
		if got := strings.Fields(lines[0]); strings.Join(got, " ") != "USER JOB HOURS CPU HOURS GPU HOURS SESSION HOURS" {
			t.Errorf("header: got %q", lines[0])
		}
		// A sub-second job is some use, not none; no GPU and no session is.
		if got := strings.Fields(lines[1]); strings.Join(got, " ") != admin+" <0.01 <0.01 0.00 0.00" {
			t.Errorf("row: got %q, want %s, <0.01 job and cpu hours, 0.00 gpu and session hours", lines[1], admin)
		}
		if !strings.HasPrefix(errs, "(usage from ") {
			t.Errorf("stderr: got %q, want the window", errs)
		}
	})

	t.Run("json by user", func(t *testing.T) {
		out, errs, code := run(t, p, p.Admin, "usage", "--since", "1h", "-o", "json")
		var rep dspool.UsageReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
			t.Fatalf("exit %d, output %q, stderr %q: want a JSON report", code, out, errs)
		}
		if rep.By != dspool.UsageByUser || rep.Until.Sub(rep.Since) != time.Hour || len(rep.Users) != 1 ||
			rep.Users[0].User != admin || rep.Users[0].JobSeconds <= 0 || rep.Users[0].CPUSeconds != 2*rep.Users[0].JobSeconds {
			t.Errorf("got %+v, want an hour by user with %s's job seconds, cpu seconds twice that", rep, admin)
		}
	})

	t.Run("table by pool", func(t *testing.T) {
		out, errs, code := run(t, p, p.Admin, "usage", "--by", "pool", "--since", "7d")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 2 {
			t.Fatalf("exit %d, output:\n%s\nstderr: %s\nwant a header and one row", code, out, errs)
		}
		got := strings.Fields(lines[1])
		if len(got) != 4 || got[0] != dspool.DefaultPool || got[1] != "<0.01" || got[2] != "3.50" || got[3] != "0.00" {
			t.Errorf("row: got %q, want default, <0.01 hours, 3.50 per node-hour, 0.00 cost", lines[1])
		}
	})

	t.Run("csv by pool", func(t *testing.T) {
		out, errs, code := run(t, p, p.Admin, "usage", "--by", "pool", "-o", "csv")
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if code != 0 || err != nil || len(recs) != 2 {
			t.Fatalf("exit %d, output %q (%v), stderr %q: want a header and one record", code, out, err, errs)
		}
		if strings.Join(recs[0], ",") != "pool,node_seconds,node_hours,price_per_node_hour,cost" {
			t.Errorf("header: got %q", recs[0])
		}
		secs, err1 := strconv.ParseFloat(recs[1][1], 64)
		cost, err2 := strconv.ParseFloat(recs[1][4], 64)
		if recs[1][0] != dspool.DefaultPool || err1 != nil || err2 != nil || secs <= 0 || recs[1][3] != "3.5" || cost != secs/3600*3.5 {
			t.Errorf("record: got %q, want the default pool's node seconds priced at 3.5 per hour", recs[1])
		}
	})

	t.Run("csv by user", func(t *testing.T) {
		out, _, code := run(t, p, p.Admin, "usage", "-o", "csv")
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if code != 0 || err != nil || len(recs) != 2 || strings.Join(recs[0], ",") != "user,job_seconds,cpu_seconds,gpu_seconds,session_seconds" || recs[1][0] != admin {
			t.Errorf("exit %d, records %q (%v): want the header and %s's record", code, recs, err, admin)
		}
	})

	t.Run("a user sees only themselves", func(t *testing.T) {
		bob, err := p.DB.CreateUser(ctx, "bob", false)
		if err != nil {
			t.Fatal(err)
		}
		out, errs, code := run(t, p, p.ClientFor(bob), "usage", "-o", "csv")
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if code != 0 || err != nil || len(recs) != 2 || strings.Join(recs[1], ",") != "bob,0,0,0,0" {
			t.Errorf("exit %d, records %q (%v), stderr %q: want only bob's record of zeros", code, recs, err, errs)
		}
	})

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"bad grouping", []string{"usage", "--by", "team"}, `dspool: --by: "team" is not a grouping: use user or pool`},
		{"bad span", []string{"usage", "--since", "a month"}, `dspool: --since: "a month" is not a span of time: use e.g. 24h, 7d or 720h (30 days)`},
		{"bad output", []string{"usage", "-o", "yaml"}, `dspool: --output: "yaml" is not an output format for usage: use table, json or csv`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := run(t, p, p.Admin, tt.args...)
			if code != 1 || out != "" || strings.TrimSpace(errs) != tt.want {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errs, tt.want)
			}
		})
	}
}
