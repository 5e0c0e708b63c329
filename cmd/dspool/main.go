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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
