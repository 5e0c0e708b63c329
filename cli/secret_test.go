package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/cli"
	"github.com/dspool/dspool/dspooltest"
)

func TestSecretCommands(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{Nodes: 1, UIDBase: 47100})
	env := map[string]string{"DSPOOL_SERVER": p.URL, "DSPOOL_TOKEN": p.Admin.Token, "DSPOOL_CONFIG": filepath.Join(t.TempDir(), "none.json")}
	run := func(stdin string, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		app := &cli.App{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(stdin), Getenv: func(k string) string { return env[k] }}
		code := app.Run(context.Background(), args)
		return out.String(), errb.String(), code
	}
	if _, errs, code := run("", "secret", "set", "k", "the-value"); code == 0 || !strings.Contains(errs, "standard input") {
		t.Errorf("a value as an argument: exit %d, %q; want a refusal", code, errs)
	}
	if _, errs, code := run("", "secret", "set", "k"); code == 0 || !strings.Contains(errs, "empty") {
		t.Errorf("empty standard input: exit %d, %q; want a refusal", code, errs)
	}
	if _, errs, code := run("v1\n", "secret", "set", "k"); code != 0 {
		t.Fatalf("set: exit %d: %s", code, errs)
	}
	if _, errs, code := run("v2\n", "secret", "set", "raw", "--raw"); code != 0 {
		t.Fatalf("set --raw: exit %d: %s", code, errs)
	}
	out, errs, code := run("", "job", "submit", "--wait", "-o", "json", "--secret", "k=VALUE", "--secret-file", "raw", "--",
		"sh", "-c", `printf '%s' "$VALUE" | wc -c; wc -c < "$DSPOOL_SECRETS_DIR/raw"`)
	var j dspool.Job
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil {
		t.Fatalf("job: exit %d, %s %s", code, out, errs)
	}
	b, _ := os.ReadFile(filepath.Join(p.Share, "jobs", strconv.FormatInt(j.ID, 10), "attempt-1.log"))
	if got := strings.Fields(string(b)); strings.Join(got, " ") != "2 3" {
		t.Errorf("the job saw values of %q bytes, want 2 (newline dropped) and 3 (--raw)", got)
	}
	if out, _, _ := run("", "job", "show", strconv.FormatInt(j.ID, 10)); !strings.Contains(out, "  secrets:    k in $VALUE, raw as a file\n") {
		t.Errorf("job show lacks the job's secrets:\n%s", out)
	}
	out, _, _ = run("", "secret", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || strings.Contains(out, "v1") || strings.Contains(out, "v2") {
		t.Errorf("secret list:\n%s", out)
	}
	if _, errs, code := run("", "secret", "delete", "k"); code != 0 || !strings.Contains(errs, "secret k deleted") {
		t.Errorf("delete: exit %d, %q", code, errs)
	}
	if _, errs, code := run("", "job", "submit", "--secret", "k", "--", "true"); code == 0 || !strings.Contains(errs, "dspool: --secret k: you have no secret named k") {
		t.Errorf("a deleted secret at submit: exit %d, %q; want a refusal naming the flag", code, errs)
	}
	if _, errs, code := run("", "job", "submit", "--secret", "raw", "--secret-file", "../x", "--", "true"); code == 0 ||
		!strings.Contains(errs, `dspool: --secret-file ../x: "../x" is not a secret's name: give NAME for your own secret, or TEAM/NAME for a team's`) {
		t.Errorf("a path as a secret: exit %d, %q; want a refusal about the secret's name, naming the flag", code, errs)
	}
	if _, errs, code := run("", "job", "submit", "--secret", "raw=X", "--secret", "k=X", "--", "true"); code == 0 ||
		!strings.Contains(errs, "dspool: --secret k=X: X already holds --secret raw=X") {
		t.Errorf("two secrets in one variable: exit %d, %q; want both named by their flags", code, errs)
	}

	// A team's secret is named TEAM/NAME wherever a secret is named.
	ctx := context.Background()
	if _, err := p.Admin.CreateTeam(ctx, "ml"); err != nil {
		t.Fatal(err)
	}
	me, _ := p.Admin.Whoami(ctx)
	if _, err := p.Admin.AddTeamMember(ctx, "ml", me.Name, false); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run("w\n", "secret", "set", "ml/wandb"); code != 0 {
		t.Fatalf("set ml/wandb: exit %d, %s", code, errs)
	}
	if out, _, _ := run("", "secret", "list"); !strings.Contains(out, "ml/wandb") {
		t.Errorf("secret list lacks ml/wandb:\n%s", out)
	}
	if _, errs, code := run("", "secret", "delete", "ml/wandb", "--team", "nlp"); code == 0 || !strings.Contains(errs, "--team") {
		t.Errorf("delete ml/wandb --team nlp: exit %d, %q; want a refusal", code, errs)
	}
	if _, errs, code := run("", "secret", "delete", "ml/wandb"); code != 0 || !strings.Contains(errs, "secret ml/wandb deleted") {
		t.Errorf("delete ml/wandb: exit %d, %q", code, errs)
	}
}
