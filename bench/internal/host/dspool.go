package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// TempDir makes a benchmark's temporary directory, traversable by others
// (dspool runs jobs, sessions and Jupyter servers as their users beneath
// it); done removes it unless keep.
func TempDir(prefix string, keep bool) (dir string, done func(), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	if keep {
		Logf("keeping %s", dir)
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// BuildDspool builds ./cmd/dspool into dir, statically, as releases are
// (no dynamic loader at each start of the CLI), and returns its path.
func BuildDspool(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "dspool")
	Logf("building %s", bin)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/dspool/dspool/cmd/dspool")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ./cmd/dspool: %v: %s", err, Tail(out, 5))
	}
	return bin, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Listening reports whether something accepts connections on 127.0.0.1:port.
func Listening(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// CLI runs dspool commands as the login in Config (DSPOOL_CONFIG).
type CLI struct {
	Bin, Config string
}

// Output runs a command within 30 s, with stdin when not nil, and returns
// its standard output; a failure carries the end of its standard error.
func (c CLI) Output(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+c.Config)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		return out, fmt.Errorf("dspool %v: %v: %s", args, err, Tail(stderr, 3))
	}
	return out, nil
}

// ReadyNodes counts the ready nodes of pool (every pool when empty).
func (c CLI) ReadyNodes(ctx context.Context, pool string) (int, error) {
	args := []string{"node", "list", "-o", "json"}
	if pool != "" {
		args = append(args, "--pool", pool)
	}
	out, err := c.Output(ctx, nil, args...)
	if err != nil {
		return 0, err
	}
	var nodes []struct{ State string }
	if err := json.Unmarshal(out, &nodes); err != nil {
		return 0, fmt.Errorf("dspool node list -o json: %w", err)
	}
	ready := 0
	for _, n := range nodes {
		if n.State == "ready" {
			ready++
		}
	}
	return ready, nil
}

// Prepared is a benchmark's temporary directory and the dspool binary it
// measures.
type Prepared struct {
	Dir, Bin, Version string
	Done              func() // removes Dir unless kept
}

// Prepare makes the temporary directory (prefix, kept when keep), builds
// dspool into it unless bin names one, and reads its version.
func Prepare(ctx context.Context, prefix, bin string, keep bool) (*Prepared, error) {
	dir, done, err := TempDir(prefix, keep)
	if err != nil {
		return nil, err
	}
	if bin == "" {
		if bin, err = BuildDspool(ctx, dir); err != nil {
			done()
			return nil, err
		}
	}
	p := &Prepared{Dir: dir, Bin: bin, Done: done}
	if out, err := exec.CommandContext(ctx, bin, "version").Output(); err == nil {
		p.Version = string(bytes.TrimSpace(out))
	}
	return p, nil
}

// WriteJSON writes v, indented, to path; nothing when path is "".
func WriteJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
