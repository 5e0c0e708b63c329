package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// nodeRevokeCmd is `dspool node revoke NAME` (admin).
func (a *App) nodeRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a node's credential: its agent is cut off at once (admin)",
		Long: `Revoke a node's credential (after a machine is lost, stolen or compromised):
its connection is closed at once and its agent is refused from then on; its
running work is handled as a lost node's (retried elsewhere if the job
allows). To bring the machine back, remove its agent's node.json and join it
again with a new join token. Agents also rotate their credential at each start.`,
		Example: "  dspool node revoke highmem-1",
		Args:    args(1, 1, "one node name or id", "dspool node revoke highmem-1"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			n, err := cl.RevokeNode(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			if ok, _ := a.json(); ok {
				return a.print(n, nil, nil)
			}
			fmt.Fprintf(a.Stderr, "revoked node %s's credential (%s): it is cut off\n", n.Name, n.ID)
			return nil
		},
	}
}
