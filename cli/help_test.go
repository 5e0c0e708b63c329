package cli_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dspool/dspool/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite the golden help files")

// TestHelp keeps every command's --help in a golden file, and requires an
// example on every command.
func TestHelp(t *testing.T) {
	app := &cli.App{Getenv: func(string) string { return "" }}
	var walk func(c *cobra.Command)
	var paths [][]string
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		paths = append(paths, strings.Fields(c.CommandPath()))
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := app.Root()
	walk(root)
	for _, p := range paths {
		name := strings.Join(p, "_")
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			a := &cli.App{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
			if code := a.Run(context.Background(), append(p[1:], "--help")); code != 0 {
				t.Fatalf("--help exited %d: %s", code, out.String())
			}
			if !strings.Contains(out.String(), "Examples:") {
				t.Errorf("%s --help has no example", strings.Join(p, " "))
			}
			golden := filepath.Join("testdata", "help", name+".txt")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cli -update)", err)
			}
			if out.String() != string(want) {
				t.Errorf("%s --help changed; run go test ./cli -update if that is intended.\ngot:\n%s", strings.Join(p, " "), out.String())
			}
		})
	}
}

// TestHelpSwitches: a flag that takes no value shows none in --help. pflag
// takes a `quoted` word of a flag's usage as the name of its value, so a
// switch whose usage quotes a command would seem to take that command.
func TestHelpSwitches(t *testing.T) {
	app := &cli.App{Getenv: func(string) string { return "" }}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); f.Value.Type() == "bool" && name != "" {
				t.Errorf("%s --%s takes no value, but its help shows one: %q (take the backquotes out of its usage)", c.CommandPath(), f.Name, name)
			}
		}
		c.LocalFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(app.Root())
}
