package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Lists that grow without bound (jobs, sessions, pool events, the audit
// log) show one page (--limit, --before); -o json prints the page as an
// array, as every list does, and standard error says when there is more
// and the command that shows it (docs/decisions/0023).

// more says on standard error that a list stopped at its page, and how to
// see the next: the same command with --before next. It says nothing when
// next is 0.
func (a *App) more(cmd *cobra.Command, args []string, what string, next int64) {
	if next == 0 {
		return
	}
	parts := append([]string{cmd.CommandPath()}, quoteArgs(args)...)
	local := cmd.LocalNonPersistentFlags()
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if f.Name == "before" || local.Lookup(f.Name) == nil {
			return
		}
		if f.Value.Type() == "bool" {
			parts = append(parts, "--"+f.Name)
			return
		}
		parts = append(parts, "--"+f.Name, quoteArgs([]string{f.Value.String()})[0])
	})
	parts = append(parts, "--before", strconv.FormatInt(next, 10))
	fmt.Fprintf(a.Stderr, "(more %s: %s)\n", what, strings.Join(parts, " "))
}

// pageFlags are --limit and --before of a list.
func pageFlags(c *cobra.Command, limit *int, def int, before *int64, what string) {
	c.Flags().IntVar(limit, "limit", def, "at most this many "+what+", the newest (1-10000)")
	c.Flags().Int64Var(before, "before", 0, "the page of "+what+" older than this (the --before that the last page's note gives)")
}
