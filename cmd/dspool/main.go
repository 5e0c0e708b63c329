// Command dspool is the single binary of dspool: CLI, control plane and
// node agent.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	// Pool schedules name time zones; hosts without a zone database
	// (minimal containers) still know them.
	_ "time/tzdata"

	"github.com/dspool/dspool/cli"
	"github.com/dspool/dspool/provider/azurevmss"
	"github.com/dspool/dspool/provider/kubernetes"
	"github.com/dspool/dspool/provider/slurm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The providers the control plane runs besides local and static,
	// registered here and nowhere else.
	code := cli.Main(ctx, os.Args[1:], slurm.Kind(slurm.Options{}), azurevmss.Kind(azurevmss.Options{}),
		kubernetes.Kind(kubernetes.Options{}))
	stop()
	os.Exit(code)
}
