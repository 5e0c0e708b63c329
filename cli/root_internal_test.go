package cli

import (
	"io"
	"testing"
)

// TestCommandNames checks that each top-level command is listed under the
// name it answers to: a command line that names it builds that branch
// alone.
func TestCommandNames(t *testing.T) {
	a := &App{Stdout: io.Discard, Stderr: io.Discard}
	for _, c := range a.commands() {
		if got := c.build().Name(); got != c.name {
			t.Errorf("the command listed as %q is named %q", c.name, got)
		}
	}
}

// TestBranchAlone checks that a command line naming a top-level command
// builds its branch alone, and that one naming none builds every command.
func TestBranchAlone(t *testing.T) {
	a := &App{Stdout: io.Discard, Stderr: io.Discard}
	all := len(a.commands())
	tests := []struct {
		name string
		arg  string
		want int // top-level commands, besides cobra's own
	}{
		{"a command", "job", 1},
		{"the last listed", "version", 1},
		{"no command", "", all},
		{"a flag first", "--server", all},
		{"help", "help", all},
		{"a typo", "jbo", all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := len(a.root(tt.arg).Commands()); got != tt.want {
				t.Errorf("root(%q) has %d commands, want %d", tt.arg, got, tt.want)
			}
		})
	}
}
