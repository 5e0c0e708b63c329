package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dspool/dspool/api"
)

func TestNoPodmanSaysWhatToDo(t *testing.T) {
	for _, tt := range []struct {
		name, why, want string
	}{
		{"not installed", "podman is not installed", "node gpu-3 has no podman (podman is not installed): install podman and runc, or submit without --image"},
		{"no runc", "runc is not installed", "node gpu-3 has no podman (runc is not installed): install podman and runc, or submit without --image"},
		{"no init", "catatonit is not installed", "node gpu-3 has no init for containers (catatonit is not installed): install catatonit, or submit without --image"},
		{"not root", "the agent does not run as root", "node gpu-3 cannot run jobs in images: the agent does not run as root; submit without --image"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := noPodman("gpu-3", tt.why).Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestImageFileOnTheShare(t *testing.T) {
	ag := &Agent{cfg: Config{Share: "/srv/dspool"}}
	for _, tt := range []struct{ in, want string }{
		{"home/ada/torch.tar", "home/ada/torch.tar"},
		{"/srv/dspool/data/torch.tar", "data/torch.tar"},
		{"/srv/dspool/../etc/shadow.tar", ""},
		{"/srv/dspoolx/torch.tar", ""},
		{"/tmp/torch.tar", ""},
	} {
		got, err := ag.shareRel(tt.in)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("shareRel(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestEnvFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "env")
	if err := writeEnvFile(path, []string{"A=1", "B=x=y z"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != "A=1\nB=x=y z\n" {
		t.Errorf("env file %q", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("env file mode %v, want 0600", st.Mode().Perm())
	}
	// A line break would start a variable of the value's choosing.
	err := writeEnvFile(path, []string{"KEY=a\nLD_PRELOAD=/x.so"})
	if err == nil || !strings.Contains(err.Error(), "KEY holds a line break") {
		t.Errorf("a value with a line break: %v", err)
	}
	// What is at the path is replaced, not written through.
	target := filepath.Join(dir, "target")
	_ = os.Remove(path)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if err := writeEnvFile(path, []string{"A=1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(target); err == nil {
		t.Error("the env file was written through a symlink")
	}
}

func TestTransfersServeTheShareFromTheNode(t *testing.T) {
	for _, tt := range []struct {
		cmd  string
		want bool
	}{
		{"scp -t .", true},
		{"scp -f data.csv", true},
		{"rsync --server -vlogDtpre.iLsfxCIvu . data/", true},
		{"rsync -a a b", false},
		{"python3 train.py", false},
		{"scp", false},
	} {
		req := &api.ChannelRequest{Kind: api.ChannelExec, Command: tt.cmd}
		if got := transfer(req); got != tt.want {
			t.Errorf("transfer(%q) = %v, want %v", tt.cmd, got, tt.want)
		}
	}
}
