package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/dspool/dspool/cli"
)

// TestTyposAreErrors: a mistyped subcommand fails (it is not help and
// exit 0), naming what was meant, and a command's own flag given without
// -- says where it belongs.
func TestTyposAreErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"job", "sumbit"}, `unknown command "sumbit" for "dspool job": did you mean "submit"?`},
		{[]string{"pool", "lst"}, `did you mean "list"?`},
		{[]string{"job", "submit", "python3", "train.py", "--epochs", "10"}, "unknown flag: --epochs: if it is your command's, put -- before the command"},
	} {
		var out, errb bytes.Buffer
		app := &cli.App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
		code := app.Run(context.Background(), c.args)
		if code == 0 || !strings.Contains(errb.String(), c.says) {
			t.Errorf("dspool %s: exit %d, stderr %q; want a failure saying %q", strings.Join(c.args, " "), code, errb.String(), c.says)
		}
	}
	// The group alone still shows its help.
	var out, errb bytes.Buffer
	app := &cli.App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	if code := app.Run(context.Background(), []string{"job"}); code != 0 || !strings.Contains(out.String(), "Available Commands") {
		t.Errorf("dspool job: exit %d, %q; want its help", code, out.String())
	}
}
