package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
)

func (a *App) poolEventsCmd() *cobra.Command {
	var since string
	var limit int
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
		Example: "  dspool pool events gpu\n  dspool pool events gpu --since 1h\n  dspool pool events gpu --limit 1000 -o json",
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
			evs, err := cl.PoolEvents(cmd.Context(), argv[0], span, limit)
			if err != nil {
				return err
			}
			if evs == nil {
				evs = []*dspool.PoolEvent{}
			}
			if ok, _ := a.json(); !ok && len(evs) == 0 {
				fmt.Fprintf(a.Stderr, "(no events in pool %s%s: scaling, removed nodes and provider errors show here)\n", argv[0], sinceNote(since))
			}
			return a.print(evs, []string{"TIME", "KIND", "NODES", "MESSAGE"}, func(add func(...any)) {
				for _, ev := range evs {
					add(ev.At.Local().Format("Jan 02 15:04:05"), ev.Kind, dash(strings.Join(ev.Nodes, ",")),
						strings.ReplaceAll(ev.Message, "\n", " "))
				}
			})
		},
	}
	c.Flags().StringVar(&since, "since", "", "only events of the last span, e.g. 30m, 1h, 7d (default: every event kept)")
	c.Flags().IntVar(&limit, "limit", 100, "at most this many events, the newest (1-10000)")
	return c
}

func sinceNote(since string) string {
	if since == "" {
		return ""
	}
	return " in the last " + since
}
