package secretenv_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dspool/dspool/internal/secretenv"
)

const name = "DSPOOL_TEST_SECRET"

// TestMain lets the test binary play the program: with SECRETENV_CHILD set
// it calls Hide and prints what it got and what its environment block holds.
func TestMain(m *testing.M) {
	if os.Getenv("SECRETENV_CHILD") != "" {
		vals, err := secretenv.Hide([]string{name})
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error())
			os.Exit(1)
		}
		block, _ := os.ReadFile("/proc/self/environ")
		os.Stdout.WriteString("value=" + vals[name] + "\n")
		if bytes.Contains(block, []byte("s3cr3t")) {
			os.Stdout.WriteString("LEAKED in /proc/self/environ\n")
		}
		if os.Getenv(name) != "" {
			os.Stdout.WriteString("LEAKED in the Go environment\n")
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestHideReexecutesWithoutTheSecret(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SECRETENV_CHILD=1", name+"=s3cr3t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if got := string(out); got != "value=s3cr3t\n" {
		t.Fatalf("child printed %q; want the value and no leak", got)
	}
}

func TestPassKeepsTheSecretOutOfTheEnvironment(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SECRETENV_CHILD=1")
	f, err := secretenv.Pass(cmd, map[string]string{name: "s3cr3t"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	if got := out.String(); got != "value=s3cr3t\n" {
		t.Fatalf("child printed %q; want the value and no leak", got)
	}
	for _, kv := range cmd.Env {
		if strings.Contains(kv, "s3cr3t") {
			t.Fatalf("the child's environment holds %q", kv)
		}
	}
}

func TestHideRefusesAnUnsealedDescriptor(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.WriteString(`{"` + name + `":"x"}`)
	w.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.ExtraFiles = []*os.File{r}
	cmd.Env = append(os.Environ(), "SECRETENV_CHILD=1", "DSPOOL_SECRET_ENV_FD=3")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a sealed memory file") {
		t.Fatalf("child with a pipe for secrets: %v, %q; want it refused", err, out)
	}
}
