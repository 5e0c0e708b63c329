package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
)

// TestScheduleCommands: schedule create takes the flags of job submit, a
// batch script and its #DSPOOL lines included, and names the flag an
// error is about; list, show, pause, resume and delete print tables, or
// JSON.
func TestScheduleCommands(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 47900})
	script := filepath.Join(t.TempDir(), "etl.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n#DSPOOL --cpus 0.5 --memory 128MiB\necho etl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, p, p.Admin, "schedule", "create", "etl", "--cron", "0 2 * * *", "--tz", "Europe/Lisbon",
		"--overlap", "replace", "--memory", "256MiB", "--env", "STAGE=prod", script, "full")
	if code != 0 || !strings.Contains(out, "etl") || !strings.Contains(out, "Europe/Lisbon") || !strings.Contains(out, "replace") {
		t.Fatalf("schedule create with a script: exit %d, %q %q", code, out, errs)
	}
	var d api.ScheduleDetail
	out, errs, code = run(t, p, p.Admin, "schedule", "show", "etl", "-o", "json")
	if code != 0 {
		t.Fatalf("schedule show: exit %d, %s", code, errs)
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("schedule show -o json: %v: %s", err, out)
	}
	j := d.Job
	if d.Cron != "0 2 * * *" || d.Overlap != dspool.OverlapReplace || j.Name != "etl" || j.CPUs != 500 || j.Memory != 256<<20 ||
		j.Env["STAGE"] != "prod" || len(j.Command) != 5 || j.Command[0] != "/bin/sh" || j.Command[4] != "full" || d.NextSlot == nil {
		t.Errorf("the schedule: %+v, job %+v; want the script's --cpus, the command line's --memory, its env and argument, named etl", d.Schedule, j)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad time zone", []string{"a", "--cron", "@daily", "--tz", "Lisbon", "--", "true"}, "--tz: \"Lisbon\" is not a time zone"},
		{"bad cron", []string{"a", "--cron", "0 2 * *", "--", "true"}, "--cron: \"0 2 * *\" is not a cron expression"},
		{"no cron", []string{"a", "--", "true"}, `required flag(s) "cron" not set`},
		{"bad overlap", []string{"a", "--cron", "@daily", "--overlap", "wait", "--", "true"}, "--overlap: \"wait\" is not an overlap policy"},
		{"bad name", []string{"A", "--cron", "@daily", "--", "true"}, "NAME: \"A\" is not a valid name"},
		{"no such pool", []string{"a", "--cron", "@daily", "--pool", "nope", "--", "true"}, "pool: no pool named \"nope\""},
		{"no such secret", []string{"a", "--cron", "@daily", "--secret", "nope", "--", "true"}, "--secret nope"},
		{"a directive that is no job flag", []string{"a", "--cron", "@daily", scriptWith(t, "#DSPOOL --tz UTC")}, "#DSPOOL --tz is no flag a script may set"},
		{"a flag of the command without --", []string{"a", "--cron", "@daily", "python3", "--epochs", "3"}, "put -- before the command: dspool schedule create NAME"},
		{"taken", []string{"etl", "--cron", "@daily", "--", "true"}, "already have a schedule named etl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := run(t, p, p.Admin, append([]string{"schedule", "create"}, tc.args...)...)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want an error saying %q", code, errs, tc.want)
			}
		})
	}

	out, _, code = run(t, p, p.Admin, "schedule", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "active") || !strings.Contains(lines[1], "WET") {
		t.Errorf("schedule list: exit %d, %q; want a header and etl, active, its next slot in Lisbon's time", code, out)
	}
	for _, step := range []struct{ verb, want string }{{"pause", "paused"}, {"resume", "active"}} {
		out, errs, code := run(t, p, p.Admin, "schedule", step.verb, "etl")
		if code != 0 || !strings.Contains(out, step.want) {
			t.Errorf("schedule %s: exit %d, %q %q; want it %s", step.verb, code, out, errs, step.want)
		}
	}
	out, _, code = run(t, p, p.Admin, "schedule", "show", "etl")
	if code != 0 || !strings.Contains(out, "cron:       0 2 * * * (Europe/Lisbon)") || !strings.Contains(out, "No runs yet.") {
		t.Errorf("schedule show: exit %d, %q", code, out)
	}
	if _, errs, code := run(t, p, p.Admin, "schedule", "delete", "etl", "nope"); code == 0 || !strings.Contains(errs, "schedule nope not found") {
		t.Errorf("schedule delete etl nope: exit %d, %q; want nope not found", code, errs)
	}
	if l, err := p.Admin.Schedules(t.Context(), false); err != nil || len(l) != 0 {
		t.Errorf("schedules after the delete: %v %v, want none", l, err)
	}
}

func scriptWith(t *testing.T, line string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+line+"\ntrue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
