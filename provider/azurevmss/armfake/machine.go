package armfake

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dspool/dspool/yamljson"
)

// Machine does what an instance's cloud-init does with its custom data:
// it runs the agent's service command (ExecStart, with %H the instance's
// computer name), with the variables of the tokens' file added to env,
// until ctx ends (then SIGINT, as systemd's stop). exe replaces the
// command's dspool binary and dir is the machine's own disk: its agent
// keeps its state in dir/state and logs to dir/agent.log.
func Machine(ctx context.Context, in Instance, exe, dir string, env []string) error {
	raw, err := base64.StdEncoding.DecodeString(in.CustomData)
	if err != nil {
		return fmt.Errorf("instance %s: custom data: %w", in.ComputerName, err)
	}
	js, err := yamljson.Convert(raw, yamljson.Limits{Nodes: 1000, Aliased: 10, Depth: 10})
	if err != nil {
		return fmt.Errorf("instance %s: custom data is not YAML: %w", in.ComputerName, err)
	}
	var cc struct {
		WriteFiles []struct{ Path, Content string } `json:"write_files"`
	}
	_ = json.Unmarshal(js, &cc)
	var vars, args []string
	for _, f := range cc.WriteFiles {
		switch f.Path {
		case "/etc/dspool/join.env":
			vars = strings.Split(strings.TrimSpace(f.Content), "\n")
		case "/etc/systemd/system/dspool-agent.service":
			for _, l := range strings.Split(f.Content, "\n") {
				if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
					args = strings.Fields(strings.ReplaceAll(v, "%H", in.ComputerName))
				}
			}
		}
	}
	if len(vars) == 0 || len(args) < 2 {
		return fmt.Errorf("instance %s: custom data without the tokens' file or the agent's service:\n%s", in.ComputerName, raw)
	}
	for i := range args[:len(args)-1] {
		if args[i] == "--state" {
			args[i+1] = filepath.Join(dir, "state")
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, exe, args[1:]...)
	cmd.Env = append(append([]string(nil), env...), vars...)
	out, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("instance %s: its agent: %w", in.ComputerName, err)
	}
	return nil
}

// Machines runs a Machine for each instance of s once it has provisioned,
// and stops it when the instance is being deleted, until ctx ends; each
// gets dir/NAME as its disk. An agent that ends while its instance lives
// is reported to failed.
func (f *Server) Machines(ctx context.Context, s *ScaleSet, exe, dir string, env []string, failed func(error)) {
	type machine struct {
		stop context.CancelFunc
		done chan struct{}
	}
	running := map[string]*machine{}
	for ctx.Err() == nil {
		live := map[string]bool{}
		for _, in := range f.Instances(s) {
			if in.State == "Deleting" {
				continue
			}
			live[in.ComputerName] = true
			if in.State != "Succeeded" || running[in.ComputerName] != nil {
				continue
			}
			mctx, stop := context.WithCancel(ctx)
			m := &machine{stop: stop, done: make(chan struct{})}
			running[in.ComputerName] = m
			go func() {
				defer close(m.done)
				err := Machine(mctx, in, exe, filepath.Join(dir, in.ComputerName), env)
				if err == nil && mctx.Err() == nil {
					err = fmt.Errorf("instance %s: its agent exited", in.ComputerName)
				}
				if err != nil && mctx.Err() == nil && failed != nil && f.lives(s, in.ComputerName) {
					failed(err)
				}
			}()
		}
		for name, m := range running {
			if !live[name] {
				m.stop() // the machine is deleted
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, m := range running {
		<-m.done
	}
}

// lives reports whether the instance called name is there and not being
// deleted.
func (f *Server) lives(s *ScaleSet, name string) bool {
	for _, in := range f.Instances(s) {
		if in.ComputerName == name {
			return in.State != "Deleting"
		}
	}
	return false
}
