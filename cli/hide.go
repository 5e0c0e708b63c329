package cli

import (
	"fmt"

	"github.com/dspool/dspool/internal/secretenv"
	"github.com/dspool/dspool/secrets"
	"golang.org/x/sys/unix"
)

// secretVars are the variables a long-running dspool may be given secrets
// in.
var secretVars = []string{secrets.EnvVar, "DSPOOL_JOIN_TOKEN", "DSPOOL_OIDC_CLIENT_SECRET", "DSPOOL_TOKEN"}

// guardProcess is the first thing the control plane and the agent do: it
// moves the secrets they were given in the environment out of the
// environment block (re-executing the process once when needed), so no file
// of /proc shows them, and makes the process not dumpable: no core file,
// and no process of another uid, nor a job of the same one, may trace it or
// read its memory, environment or descriptors through /proc.
func (a *App) guardProcess() error {
	if !a.process {
		return nil
	}
	vals, err := secretenv.Hide(secretVars)
	if err != nil {
		return err
	}
	get := a.Getenv
	a.Getenv = func(k string) string {
		if v, ok := vals[k]; ok {
			return v
		}
		return get(k)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make the process not dumpable: %w", err)
	}
	return nil
}
