package cli

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
)

// retentionFlags are the flags of `dspool up` and `dspool server` that set
// the store's retention (planeOptions.Retention, the config's retention:);
// for `server` they win over its config.
type retentionFlags struct {
	all, audit ageFlag
	export     string
}

func (f *retentionFlags) add(c *cobra.Command) {
	c.Flags().Var(&f.all, "retention", "prune finished jobs (with their attempts), ended sessions and pool events older than this, e.g. 30d; never keeps them (default 90d)")
	c.Flags().Var(&f.audit, "audit-retention", "prune audit entries older than this, e.g. 365d (default never: the audit log is kept whole)")
	c.Flags().StringVar(&f.export, "audit-export", "", "append audit entries to this file (JSON lines) before they are pruned")
}

// apply puts the flags that were given into r.
func (f *retentionFlags) apply(c *cobra.Command, r *dspool.Retention) {
	if c.Flags().Changed("retention") {
		r.Jobs, r.Sessions, r.Events = dspool.Age(f.all), dspool.Age(f.all), dspool.Age(f.all)
	}
	if c.Flags().Changed("audit-retention") {
		r.Audit = dspool.Age(f.audit)
	}
	if c.Flags().Changed("audit-export") {
		r.AuditExport = f.export
	}
}

type ageFlag dspool.Age

func (a *ageFlag) String() string {
	if *a == 0 {
		return ""
	}
	return dspool.Age(*a).String()
}
func (a *ageFlag) Set(s string) error {
	v, err := dspool.ParseAge("age", s)
	if err != nil {
		var e *dspool.Error
		if errors.As(err, &e) {
			return errors.New(e.Message)
		}
		return err
	}
	*a = ageFlag(v)
	return nil
}
func (a *ageFlag) Type() string { return "age" }

// checkRetention refuses an audit export that could not be written, or
// that would never be: entries are exported as they are pruned.
func checkRetention(r dspool.Retention, log *slog.Logger) error {
	r = r.WithDefaults()
	if r.AuditExport != "" {
		if r.Audit.Keeps() {
			return dspool.Invalid("audit_export", "audit entries are exported as they are pruned, and they are kept: give the audit retention an age too (--audit-retention, retention.audit), e.g. 365d")
		}
		if !filepath.IsAbs(r.AuditExport) {
			return dspool.Invalid("audit_export", "%s is not an absolute path", r.AuditExport)
		}
		f, err := os.OpenFile(r.AuditExport, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return dspool.Invalid("audit_export", "%v", err)
		}
		f.Close()
	}
	log.Info("retention: what ended is pruned once older than this", "jobs", r.Jobs, "sessions", r.Sessions, "events", r.Events,
		"audit", r.Audit, "audit_export", r.AuditExport)
	return nil
}

// retentionConfigHelp is the retention block of the server's config.
const retentionConfigHelp = `  retention:                 # what has ended is pruned once older than this (docs/guide.md)
    jobs: 90d                # finished jobs and their attempts; never: keep them all
    sessions: 90d            # ended SSH sessions and Jupyter servers
    events: 90d              # pool events
    audit: never             # the default: the audit log is kept whole
    audit_export: /var/lib/dspool/audit.jsonl   # with an audit age: entries appended here (JSON lines) before they go
`
