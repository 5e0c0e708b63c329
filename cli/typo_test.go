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
	// A command without a server or login says where it looked.
	var out0, err0 bytes.Buffer
	app0 := &cli.App{Stdout: &out0, Stderr: &err0, Getenv: func(k string) string {
		if k == "DSPOOL_CONFIG" {
			return "/nonexistent/login.json"
		}
		return ""
	}}
	if code := app0.Run(context.Background(), []string{"job", "list"}); code == 0 ||
		!strings.Contains(err0.String(), "no CLI login in /nonexistent/login.json (DSPOOL_CONFIG") || !strings.Contains(err0.String(), "dspool login URL") {
		t.Errorf("job list without a login: exit %d, stderr %q; want where it looked and how to log in", code, err0.String())
	}
	// The group alone still shows its help.
	var out, errb bytes.Buffer
	app := &cli.App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	if code := app.Run(context.Background(), []string{"job"}); code != 0 || !strings.Contains(out.String(), "Available Commands") {
		t.Errorf("dspool job: exit %d, %q; want its help", code, out.String())
	}
}
