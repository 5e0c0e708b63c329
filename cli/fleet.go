package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/spf13/cobra"
)

// Running a fleet: draining and removing nodes, deleting pools, and join
// tokens' expiry and revocation. Every verb here needs an admin.

func (a *App) nodeDrainCmd() *cobra.Command {
	return &cobra.Command{
		Use: "drain NAME", Short: "Stop placing work on a node; what runs there keeps running (admin)",
		Long: `Stop placing work on a node: jobs and sessions already there keep running,
new ones go to other nodes. Remove it once they are done (dspool node remove),
or let it take work again (dspool node undrain).`,
		Args: args(1, 1, "one node name or id", "dspool node drain highmem-1"), Example: "  dspool node drain highmem-1\n  dspool node drain highmem-1 -o json",
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.nodeVerb(cmd.Context(), func(cl *api.Client) (*api.NodeChange, error) { return cl.DrainNode(cmd.Context(), argv[0]) },
				func(c *api.NodeChange) string {
					if len(c.Jobs) > 0 || c.Sessions > 0 {
						return fmt.Sprintf("node %s is draining; still running there: %s. Remove it once they are done: dspool node remove %s",
							c.Node.Name, describeWork(c.Jobs, c.Sessions), c.Node.Name)
					}
					return fmt.Sprintf("node %s is draining and idle: remove it with dspool node remove %s", c.Node.Name, c.Node.Name)
				})
		},
	}
}

func (a *App) nodeUndrainCmd() *cobra.Command {
	return &cobra.Command{
		Use: "undrain NAME", Short: "Let a drained node take work again (admin)",
		Args: args(1, 1, "one node name or id", "dspool node undrain highmem-1"), Example: "  dspool node undrain highmem-1",
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.nodeVerb(cmd.Context(), func(cl *api.Client) (*api.NodeChange, error) { return cl.UndrainNode(cmd.Context(), argv[0]) },
				func(c *api.NodeChange) string {
					return fmt.Sprintf("node %s takes work again (%s)", c.Node.Name, c.Node.State)
				})
		},
	}
}

func (a *App) nodeRemoveCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use: "remove NAME", Short: "Remove a node from its pool (admin)",
		Long: `Remove a node from its pool. A node that runs jobs or sessions is refused:
drain it first (dspool node drain) and remove it once they are done, or give
--force, which ends them: the jobs' attempts end with reason node_removed and
are retried elsewhere when the jobs allow; the sessions' users are told.

A node of a local pool (dspool up) is stopped and its state deleted; a
machine that joined with dspool agent is cut off: its credential is refused
from then on, so its agent stops its work and exits. To join that machine
again, delete the agent's --state directory and give it a new join token.`,
		Args:    args(1, 1, "one node name or id", "dspool node remove highmem-1"),
		Example: "  dspool node remove highmem-1\n  dspool node remove highmem-2 --force",
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.nodeVerb(cmd.Context(), func(cl *api.Client) (*api.NodeChange, error) { return cl.RemoveNode(cmd.Context(), argv[0], force) },
				func(c *api.NodeChange) string {
					msg := fmt.Sprintf("node %s (%s) removed from pool %s", c.Node.Name, c.Node.ID, c.Node.Pool)
					if len(c.Jobs) > 0 || c.Sessions > 0 {
						msg += "; ended " + describeWork(c.Jobs, c.Sessions)
					}
					if c.Note != "" {
						msg += "\nnote: " + c.Note
					}
					return msg
				})
		},
	}
	c.Flags().BoolVar(&force, "force", false, "remove it even though it runs jobs or sessions, ending them")
	return c
}

// nodeVerb calls do and prints its answer: as JSON with -o json, else the
// node and what say says.
func (a *App) nodeVerb(ctx context.Context, do func(*api.Client) (*api.NodeChange, error), say func(*api.NodeChange) string) error {
	if _, err := a.json(); err != nil {
		return err
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	c, err := do(cl)
	if err != nil {
		return err
	}
	if ok, _ := a.json(); ok {
		return a.print(c, nil, nil)
	}
	fmt.Fprintln(a.Stderr, say(c))
	return a.printNodes([]*dspool.Node{c.Node})
}

// describeWork says "2 jobs (ids 14, 15) and 1 session".
func describeWork(jobs []int64, sessions int) string {
	var parts []string
	if len(jobs) > 0 {
		ids := make([]string, len(jobs))
		for i, id := range jobs {
			ids[i] = strconv.FormatInt(id, 10)
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", dspool.Plural(len(jobs), "job"), strings.Join(ids, ", ")))
	}
	if sessions > 0 {
		parts = append(parts, dspool.Plural(sessions, "session"))
	}
	return strings.Join(parts, " and ")
}

func (a *App) poolDeleteCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use: "delete NAME", Short: "Delete a pool (admin)",
		Long: `Delete a pool and its join tokens. A pool that has nodes, jobs (queued or
running) or sessions is refused: remove its nodes (a pool with a count starts
new ones: set count: 0 with dspool pool apply first) and let its work finish,
or give --force, which cancels its jobs, ends its sessions and removes its
nodes. Its finished jobs stay listed, and its events stay readable.`,
		Args: args(1, 1, "one pool name", "dspool pool delete highmem"), Example: "  dspool pool delete highmem --force",
		RunE: func(cmd *cobra.Command, argv []string) error {
			if _, err := a.json(); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			d, err := cl.DeletePool(cmd.Context(), argv[0], force)
			if err != nil {
				return err
			}
			if ok, _ := a.json(); ok {
				return a.print(d, nil, nil)
			}
			msg := "pool " + d.Pool + " deleted"
			if len(d.Nodes) > 0 {
				msg += fmt.Sprintf("; removed %s (%s)", dspool.Plural(len(d.Nodes), "node"), strings.Join(d.Nodes, ", "))
			}
			if len(d.Jobs) > 0 || d.Sessions > 0 {
				msg += "; ended " + describeWork(d.Jobs, d.Sessions)
			}
			fmt.Fprintln(a.Stdout, msg)
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "delete it even though it has nodes or work, ending them")
	return c
}

// joinTokenOptions are the flags of `pool join-token`.
type joinTokenOptions struct {
	ttl          string
	ttlGiven     bool
	list, revoke bool
	all          bool
	revokeTarget string // the token id after the pool's name
}

// joinTokens lists, revokes or creates the join tokens of pool.
func (a *App) joinTokens(ctx context.Context, pool string, o joinTokenOptions) error {
	if _, err := a.json(); err != nil {
		return err
	}
	if (o.revoke || o.list) && o.ttlGiven {
		return dspool.Invalid("--ttl", "is for a new token: drop it with --revoke or --list")
	}
	switch {
	case o.revoke && o.list:
		return dspool.Invalid("--list", "give --list or --revoke, not both")
	case o.revoke && o.revokeTarget == "" && !o.all:
		return dspool.Invalid("--revoke", "give the id of the token to revoke (see --list), or --all")
	case o.revoke && o.revokeTarget != "" && o.all:
		return dspool.Invalid("--all", "give a token id or --all, not both")
	}
	if !o.revoke && (o.all || o.revokeTarget != "") {
		return dspool.Invalid("--all", "goes with --revoke: dspool pool join-token %s --revoke --all", pool)
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	switch {
	case o.list:
		l, err := cl.JoinTokens(ctx, pool)
		if err != nil {
			return err
		}
		return a.printJoinTokens(l)
	case o.revoke:
		var id int64
		if !o.all {
			if id, err = strconv.ParseInt(o.revokeTarget, 10, 64); err != nil || id <= 0 {
				return dspool.Invalid("TOKEN-ID", "%q is not a join token id: list them with dspool pool join-token %s --list", o.revokeTarget, pool)
			}
		}
		l, err := cl.RevokeJoinToken(ctx, pool, id)
		if err != nil {
			return err
		}
		if ok, _ := a.json(); !ok {
			fmt.Fprintf(a.Stderr, "revoked %s of pool %s; nodes that joined with them keep working\n", dspool.Plural(len(l.Tokens), "join token"), pool)
		}
		return a.printJoinTokens(l)
	}
	req := api.JoinTokenCreate{}
	if o.ttlGiven {
		span, err := dspool.ParseSpan(o.ttl)
		if err != nil {
			return dspool.Invalid("--ttl", "%q is not a span of time: use e.g. 30m, 1h or 7d, or 0 for a token that does not expire", o.ttl)
		}
		req.TTL, req.Never = dspool.Duration(span), span == 0
	}
	t, err := cl.NewJoinToken(ctx, pool, req)
	if err != nil {
		return err
	}
	if ok, _ := a.json(); ok {
		return a.print(t, nil, nil)
	}
	fmt.Fprintln(a.Stdout, t.Token)
	if t.ExpiresAt != nil {
		fmt.Fprintf(a.Stderr, "join token %d of pool %s: it expires at %s (in %s); revoke it with dspool pool join-token %s --revoke %d\n",
			t.ID, pool, t.ExpiresAt.Local().Format(time.DateTime), time.Until(*t.ExpiresAt).Round(time.Minute), pool, t.ID)
	} else {
		fmt.Fprintf(a.Stderr, "join token %d of pool %s: it does not expire; revoke it with dspool pool join-token %s --revoke %d\n", t.ID, pool, pool, t.ID)
	}
	return nil
}

func (a *App) printJoinTokens(l *api.JoinTokenList) error {
	when := func(t *time.Time, none string) string {
		if t == nil {
			return none
		}
		return t.Local().Format("2006-01-02 15:04")
	}
	return a.print(l, []string{"ID", "CREATED", "BY", "EXPIRES", "REVOKED"}, func(add func(...any)) {
		now := time.Now()
		for _, t := range l.Tokens {
			expires := when(t.ExpiresAt, "never")
			if t.ExpiresAt != nil && !t.ExpiresAt.After(now) {
				expires += " (expired)"
			}
			add(t.ID, when(&t.CreatedAt, "-"), dash(t.CreatedBy), expires, when(t.RevokedAt, "-"))
		}
	})
}
