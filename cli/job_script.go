package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dspool/dspool"
	"github.com/google/shlex"
	"github.com/spf13/pflag"
)

// Batch scripts: `dspool job submit train.sh ARGS`, as sbatch takes them.
// The script is read here and travels in the job's command (its
// interpreter's -c), so it need not be on the share; the #DSPOOL lines at
// its top are flags of `job submit`, which the command line overrides.

// scriptPrefix marks a line of flags at the top of a batch script.
const scriptPrefix = "#DSPOOL"

// maxScript bounds a batch script: it travels in the job's command.
const maxScript = dspool.MaxArgsBytes - 1024

// batchScript reads path when it is a batch script (a file whose first
// line is #!), and returns the command that runs it with args, and its
// directives; ok is false when path is no script (a program to run).
func batchScript(path string, args []string) (command, directives []string, ok bool, err error) {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return nil, nil, false, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, false, fmt.Errorf("read the batch script %s: %w", path, err)
	}
	if !bytes.HasPrefix(b, []byte("#!")) {
		return nil, nil, false, nil
	}
	if len(b) > maxScript {
		return nil, nil, true, dspool.Invalid("script", "%s is %d bytes; a batch script travels in its job, up to %d: put it on the share and run it with `dspool job submit [flags] -- ./%s`", path, len(b), maxScript, filepath.Base(path))
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), len(b)+1)
	sc.Scan()
	interp := strings.Fields(strings.TrimSpace(strings.TrimPrefix(sc.Text(), "#!")))
	if len(interp) == 0 {
		return nil, nil, true, dspool.Invalid("script", "the first line of %s names no interpreter: begin it with #!/bin/bash, #!/usr/bin/env python3, ...", path)
	}
	// The #DSPOOL lines: among the comments and blank lines at the top.
	for line := 2; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t != "" && !strings.HasPrefix(t, "#") {
			break
		}
		rest, found := strings.CutPrefix(t, scriptPrefix)
		if !found {
			continue
		}
		words, err := shlex.Split(rest)
		if err != nil {
			return nil, nil, true, dspool.Invalid("script", "%s, line %d: %v", path, line, err)
		}
		directives = append(directives, words...)
	}
	// The script's text as the interpreter's program, the script's name
	// as $0 where the interpreter has one.
	name := filepath.Base(interp[len(interp)-1])
	switch {
	case isShell(name):
		command = append(append(interp, "-c", string(b), filepath.Base(path)), args...)
	case strings.HasPrefix(name, "python"):
		command = append(append(interp, "-c", string(b)), args...)
	case name == "perl" || name == "ruby" || name == "Rscript" || name == "node":
		command = append(append(interp, "-e", string(b)), args...)
	default:
		return nil, nil, true, dspool.Invalid("script", "%s runs with %s, which dspool does not know how to hand a script's text: put it on the share and run it with `dspool job submit [flags] -- ./%s`", path, interp[len(interp)-1], filepath.Base(path))
	}
	return command, directives, true, nil
}

func isShell(name string) bool {
	switch name {
	case "sh", "bash", "dash", "zsh", "ksh":
		return true
	}
	return false
}

// applyDirectives sets the flags a batch script's #DSPOOL lines give,
// except those the command line set; allowed are the flags they may set.
func applyDirectives(fs *pflag.FlagSet, script string, words []string, allowed map[string]bool) error {
	for i := 0; i < len(words); i++ {
		w := words[i]
		name, value, hasValue := strings.Cut(strings.TrimPrefix(w, "--"), "=")
		if !strings.HasPrefix(w, "--") || name == "" {
			return dspool.Invalid("script", "%s: %s %q is not a flag: write flags of `dspool job submit` as --name value or --name=value", script, scriptPrefix, w)
		}
		f := fs.Lookup(name)
		if f == nil || !allowed[name] {
			return dspool.Invalid("script", "%s: %s --%s is no flag a script may set (see `dspool job submit --help`)", script, scriptPrefix, name)
		}
		if !hasValue {
			if f.Value.Type() == "bool" {
				value = "true"
			} else if i+1 < len(words) {
				i++
				value = words[i]
			} else {
				return dspool.Invalid("script", "%s: %s --%s needs a value", script, scriptPrefix, name)
			}
		}
		if f.Changed {
			continue // the command line wins
		}
		if err := fs.Set(name, value); err != nil {
			return dspool.Invalid("script", "%s: %s --%s %s: %v", script, scriptPrefix, name, value, err)
		}
	}
	return nil
}

// shellQuote quotes words for a POSIX shell.
func shellQuote(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// notExported are variables of the submitter's environment that
// --export-all leaves behind: the node sets its own, or they describe the
// submitter's terminal and login rather than the work.
var notExported = map[string]bool{
	"PWD": true, "OLDPWD": true, "SHLVL": true, "TERM": true, "SHELL": true, "MAIL": true, "_": true,
	"DISPLAY": true, "COLORTERM": true, "TERM_PROGRAM": true, "HOSTNAME": true, "TMPDIR": true,
}

func exportable(k string) bool {
	return !notExported[k] && !strings.HasPrefix(k, "SSH_") && !strings.HasPrefix(k, "XDG_") && !strings.HasPrefix(k, "TMUX") &&
		dspool.ValidateEnvName(k) == nil
}

// jobEnvironment adds to spec the variables of --export-all, --export and
// --env-file, in that order (a later one wins; --env wins over them all).
func (a *App) jobEnvironment(spec *dspool.JobSpec, exports []string, all bool, envFile string) error {
	set := func(k, v string) {
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		spec.Env[k] = v
	}
	if all {
		for _, kv := range a.environ() {
			if k, v, ok := strings.Cut(kv, "="); ok && exportable(k) {
				set(k, v)
			}
		}
	}
	for _, k := range exports {
		if err := dspool.ValidateEnvName(k); err != nil {
			return dspool.Invalid("--export", "%s: %s", k, dspool.Message(err))
		}
		v, ok := a.lookupEnv(k)
		if !ok {
			return dspool.Invalid("--export", "%s is not set here: set it, or leave it out", k)
		}
		set(k, v)
	}
	if envFile != "" {
		b, err := os.ReadFile(envFile)
		if err != nil {
			return dspool.Invalid("--env-file", "%v", err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
			k = strings.TrimSpace(k)
			if !ok || dspool.ValidateEnvName(k) != nil {
				return dspool.Invalid("--env-file", "%s, line %d: %q is not KEY=VALUE", envFile, i+1, line)
			}
			v = strings.TrimSpace(v)
			if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
				v = v[1 : len(v)-1]
			}
			set(k, v)
		}
	}
	return nil
}

// environ is the environment the CLI runs in (Environ, else the process's).
func (a *App) environ() []string {
	if a.Environ != nil {
		return a.Environ()
	}
	return os.Environ()
}

// lookupEnv reads one variable of that environment.
func (a *App) lookupEnv(k string) (string, bool) {
	for _, kv := range a.environ() {
		if name, v, ok := strings.Cut(kv, "="); ok && name == k {
			return v, true
		}
	}
	return "", false
}
