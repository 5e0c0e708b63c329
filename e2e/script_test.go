package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBatchScriptsAndEnvironments: a batch script on the submitter's
// machine runs with its #DSPOOL flags (the command line's win) and its
// arguments; --export, --env-file and --login bring the submitter's
// variables and profile along; a job with a venv's bin first in its
// exported PATH runs that venv's python.
func TestBatchScriptsAndEnvironments(t *testing.T) {
	up := startUp(t, upConfig{UIDBase: uidBase(76)})
	usr, tok := up.createUser(t, "e2escript76")
	env := up.userEnv(tok)
	dir := tempDir(t)

	script := filepath.Join(dir, "train.sh")
	writeExec(t, script, `#!/bin/bash
# a comment between directives
#DSPOOL --cpus 0.5 --memory 128MiB
#DSPOOL --name scripted --env GREETING="hi there"
echo "$0 $1 $GREETING cpus=$DSPOOL_CPUS mem=$DSPOOL_MEMORY name=$DSPOOL_JOB_NAME"
`)
	out, errs, code := cli(t, env, "job", "submit", "--wait", "--memory", "256MiB", script, "arg1")
	if want := "train.sh arg1 hi there cpus=0.5 mem=268435456 name=scripted\n"; out != want || code != 0 {
		t.Errorf("a batch script: %q, exit %d (stderr %q); want %q: its directives, with --memory from the command line", out, code, errs, want)
	}
	bad := filepath.Join(dir, "bad.sh")
	writeExec(t, bad, "#!/bin/sh\n#DSPOOL --gpus\necho no\n")
	if _, errs, code := cli(t, env, "job", "submit", bad); code == 0 || !strings.Contains(errs, "#DSPOOL --gpus needs a value") {
		t.Errorf("a script with a bad directive: exit %d, stderr %q; want a refusal naming it", code, errs)
	}

	// --export and --env-file.
	envFile := filepath.Join(dir, "vars.env")
	if err := os.WriteFile(envFile, []byte("# settings\nexport LR=0.01\nEPOCHS='10'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code = cli(t, append(env, "DATASET=imagenet"), "job", "submit", "--wait", "--export", "DATASET", "--env-file", envFile,
		"--", "sh", "-c", "echo $DATASET $LR $EPOCHS")
	if out != "imagenet 0.01 10\n" || code != 0 {
		t.Errorf("--export and --env-file: %q, exit %d (stderr %q)", out, code, errs)
	}

	// A venv: its python runs when its bin is first in the exported PATH.
	venv := filepath.Join(dir, "venv")
	if out, err := exec.Command("/usr/bin/python3", "-m", "venv", "--without-pip", venv).CombinedOutput(); err != nil {
		t.Fatalf("make a venv: %v: %s", err, out)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	venvEnv := append(env, "PATH="+filepath.Join(venv, "bin")+":/usr/bin:/bin", "VIRTUAL_ENV="+venv)
	out, errs, code = cli(t, venvEnv, "job", "submit", "--wait", "--export", "PATH,VIRTUAL_ENV", "--", "python3", "-c", "import sys; print(sys.prefix)")
	if strings.TrimSpace(out) != venv || code != 0 {
		t.Errorf("a job in a venv ran python with prefix %q (exit %d, stderr %q), want %s", out, code, errs, venv)
	}

	// --login: the user's profile applies.
	cliOK(t, env, "job", "submit", "--wait", "--", "true") // makes the home
	profile := filepath.Join(up.Share, "home", usr.Name, ".profile")
	if err := os.WriteFile(profile, []byte("export MARK=from-profile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(profile, usr.UID, usr.GID); err != nil {
		t.Fatal(err)
	}
	out, errs, code = cli(t, env, "job", "submit", "--wait", "--login", "--", "sh", "-c", "echo ${MARK:-none} 'quoted arg'")
	if out != "from-profile quoted arg\n" || code != 0 {
		t.Errorf("--login: %q, exit %d (stderr %q); want the profile's variable", out, code, errs)
	}
}

func writeExec(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}
