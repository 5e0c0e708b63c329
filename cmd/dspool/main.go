// Command dspool is the single binary of dspool: CLI, control plane and
// node agent.
package main

import (
	"context"
	"os"
	// Pool schedules name time zones; hosts without a zone database
	// (minimal containers) still know them.
	_ "time/tzdata"

	"github.com/dspool/dspool/cli"
	"github.com/dspool/dspool/provider/azurevmss"
	"github.com/dspool/dspool/provider/kubernetes"
	"github.com/dspool/dspool/provider/slurm"
)

func main() {
	// The providers the control plane runs besides local and static,
	// registered here and nowhere else. The commands that must stop
	// cleanly at SIGINT or SIGTERM handle them (cli.App.withSignals).
	code := cli.Main(context.Background(), os.Args[1:], slurm.Kind(slurm.Options{}), azurevmss.Kind(azurevmss.Options{}),
		kubernetes.Kind(kubernetes.Options{}))
	os.Exit(code)
}
