// Command dspool is the single binary of dspool: CLI, control plane and
// node agent.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dspool/dspool/agent"
	"github.com/dspool/dspool/cli"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == agent.ShimArg {
		agent.RunShim()
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
