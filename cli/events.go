package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/spf13/cobra"
)

func (a *App) poolEventsCmd() *cobra.Command {
	var since string
	var limit int
	var before int64
	c := &cobra.Command{
		Use: "events NAME", Short: "Show what happened to a pool: scaling, removed nodes, provider errors",
		Long: `Show a pool's newest events, oldest first: nodes asked for (scale_out) and
chosen for removal (scale_in), nodes removed (node_removed), drained
(node_draining, node_undrained), left when their agent stopped (node_left),
gone after being lost too long (node_gone) or back (node_returned), join
tokens created or revoked (join_token), the pool deleted (pool_deleted),
provider errors (provider_error), work waiting for a node (waiting) and
policy limits (policy). A pool keeps its last 10000 events, and a deleted
pool its own. Times are local.`,
		Args:    args(1, 1, "one pool name", "dspool pool events default"),
		Example: "  dspool pool events highmem\n  dspool pool events highmem --since 1h\n  dspool pool events highmem --limit 1000 -o json",
		RunE: func(cmd *cobra.Command, argv []string) error {
			var span time.Duration
			if since != "" {
				var err error
				if span, err = dspool.ParseSpan(since); err != nil || span == 0 {
					return dspool.Invalid("--since", "%q is not a span of time: use e.g. 30m, 1h or 7d", since)
				}
			}
			if limit < 1 || limit > dspool.MaxPoolEvents {
				return dspool.Invalid("--limit", "%d is out of range: give a number from 1 to %d", limit, dspool.MaxPoolEvents)
			}
			if _, err := a.json(); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			l, err := cl.PoolEventPage(cmd.Context(), argv[0], api.EventQuery{Since: span, Limit: limit, Before: before})
			if err != nil {
				return withFlags(err, map[string]string{"limit": "--limit", "before": "--before", "since": "--since"})
			}
			evs := l.Events
			if evs == nil {
				evs = []*dspool.PoolEvent{}
			}
			if ok, _ := a.json(); !ok && len(evs) == 0 {
				fmt.Fprintf(a.Stderr, "(no events in pool %s%s: scaling, removed nodes and provider errors show here)\n", argv[0], sinceNote(since))
			}
			err = a.print(evs, []string{"TIME", "KIND", "NODES", "MESSAGE"}, func(add func(...any)) {
				for _, ev := range evs {
					add(ev.At.Local().Format("Jan 02 15:04:05"), ev.Kind, dash(strings.Join(ev.Nodes, ",")),
						strings.ReplaceAll(ev.Message, "\n", " "))
				}
			})
			a.more(cmd, argv, "events", l.Next)
			return err
		},
	}
	c.Flags().StringVar(&since, "since", "", "only events of the last span, e.g. 30m, 1h, 7d (default: every event kept)")
	pageFlags(c, &limit, 100, &before, "events")
	return c
}

func sinceNote(since string) string {
	if since == "" {
		return ""
	}
	return " in the last " + since
}
