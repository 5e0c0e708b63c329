package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dspool/dspool/cli"
)

// TestTrustedProxiesRefused: an entry of trusted_proxies (or a
// --trusted-proxy) that is no address or network is refused before
// anything starts, naming where it was given.
func TestTrustedProxiesRefused(t *testing.T) {
	dir := t.TempDir()
	n := 0
	config := func(proxies string) string {
		n++
		f := filepath.Join(dir, fmt.Sprintf("server%d.yaml", n))
		body := "listen: 127.0.0.1:0\nssh_listen: \"off\"\ndata: " + filepath.Join(dir, "data") + "\nshare: " + filepath.Join(dir, "share") +
			"\ntrusted_proxies: " + proxies + "\n"
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "a name in the config", args: []string{"server", "--config", config("[10.0.0.0/8, lb.example.com]")}, want: "trusted_proxies[1]"},
		{name: "everyone in the config", args: []string{"server", "--config", config("[0.0.0.0/0]")}, want: "trusted_proxies[0]"},
		{name: "a bad network on server's flag", args: []string{"server", "--config", config("[]"), "--trusted-proxy", "10.0.0.0/40"}, want: `"--trusted-proxy"`},
		{name: "a name on up's flag", args: []string{"up", "--data", filepath.Join(dir, "up"), "--trusted-proxy", "lb.example.com"}, want: `"--trusted-proxy"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			a := &cli.App{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
			// Cancelled: should a refusal regress, the server stops at once.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if code := a.Run(ctx, tc.args); code == 0 || !strings.Contains(out.String(), tc.want) {
				t.Errorf("exit %d, output %q; want a refusal naming %s", code, out.String(), tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "data", "dspool.db")); err == nil {
				t.Errorf("a store was created in spite of the refusal")
			}
		})
	}
}
