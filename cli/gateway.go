package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/gateway/sshgw"
	"github.com/dspool/dspool/internal/backoff"
	"github.com/spf13/cobra"
)

func (a *App) gatewayCmd() *cobra.Command {
	var listen, agentListen, advertise string
	c := &cobra.Command{
		Use:   "gateway --listen ADDR --agent-listen ADDR --advertise HOST:PORT",
		Short: "Run an SSH gateway in a process of its own, apart from the control plane",
		Long: `Run the pool's SSH front door (ssh USER@pool) as a process of its own. Several
may run behind a TCP load balancer: they keep no state, and all present the
pool's host key, which each takes from the control plane at start.

The bytes of a session do not pass through the control plane: the node the
session lands on opens each channel's connections to this gateway, at
--advertise (it must reach that address; it verifies the gateway by a key
made at each start). So a restart of the control plane leaves open SSH
connections alone; they are taken up again once it is back. The control
plane must not also serve SSH on the same address: start it with
--ssh-listen off, or on another port.

It calls the control plane with a token of an admin user that has the gateway
scope: ` + "`dspool token create --name gateway --scope gateway`" + `, given in
DSPOOL_TOKEN, with DSPOOL_SERVER and, for a pool's own CA, DSPOOL_CA (or the
saved login of ` + "`dspool login`" + `).`,
		Example: `  DSPOOL_SERVER=https://pool.example:8080 DSPOOL_CA=/etc/dspool/ca.pem DSPOOL_TOKEN=dsp_... \
    dspool gateway --listen :22 --agent-listen :7022 --advertise gw1.example:7022`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runGateway(cmd.Context(), listen, agentListen, advertise)
		},
	}
	f := c.Flags()
	f.StringVar(&listen, "listen", ":22", "address for SSH clients (HOST:PORT)")
	f.StringVar(&agentListen, "agent-listen", "127.0.0.1:0", "address for the nodes' connections (HOST:PORT)")
	f.StringVar(&advertise, "advertise", "", "HOST:PORT at which nodes reach --agent-listen (default: its address, when that names a host)")
	return c
}

func (a *App) runGateway(ctx context.Context, listen, agentListen, advertise string) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	log := logger(os.Stderr)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := gatewayConfig(ctx, cl, func(err error) {
		fmt.Fprintf(a.Stderr, "dspool: waiting for the control plane at %s: %v\n", cl.Server, dspool.Message(err))
	})
	if err != nil {
		return err
	}
	if err := sshgw.CheckCiphers("ssh_ciphers", cfg.Ciphers); err != nil {
		return err
	}
	key, err := sshgw.ParseHostKey([]byte(cfg.HostKey))
	if err != nil {
		return err
	}
	aln, err := net.Listen("tcp", agentListen)
	if err != nil {
		return fmt.Errorf("listen on %s for nodes: %w (pass --agent-listen HOST:PORT)", agentListen, err)
	}
	defer aln.Close()
	if advertise == "" {
		host, port, _ := net.SplitHostPort(aln.Addr().String())
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			return dspool.Invalid("--advertise", "--agent-listen %s names no host the nodes can dial: give --advertise HOST:PORT, the address at which they reach this gateway (port %s)", agentListen, port)
		}
		advertise = aln.Addr().String()
	} else if _, _, err := net.SplitHostPort(advertise); err != nil {
		return dspool.Invalid("--advertise", "%q is not HOST:PORT: %v", advertise, err)
	}
	sln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s for SSH: %w (pass --listen HOST:PORT)", listen, err)
	}
	remote, err := sshgw.NewRemote(sshgw.RemoteConfig{Client: cl, Listener: aln, Advertise: advertise,
		Heartbeat: time.Duration(cfg.Heartbeat), Logger: log})
	if err != nil {
		sln.Close()
		return err
	}
	defer remote.Close()
	gw := sshgw.New(sshgw.Config{HostKey: key, Backend: remote, Logger: log, Ciphers: cfg.Ciphers, PasswordAuth: cfg.PasswordAuth})
	log.Info("ssh gateway listening", "addr", sln.Addr().String(), "nodes_dial", advertise, "host_key", key.Fingerprint(),
		"control_plane", cl.Server, "gateway", remote.ID(), "password_logins", cfg.PasswordAuth)
	done := make(chan error, 1)
	go func() { done <- gw.Serve(sln) }()
	select {
	case <-ctx.Done():
		gw.Close()
		sln.Close()
		<-done
		return nil
	case err := <-done:
		return err
	}
}

// gatewayConfig takes the gateway's configuration from the control plane,
// waiting for it (with backoff) while it cannot be reached; a refusal
// (wrong token, no gateway scope) ends the wait.
func gatewayConfig(ctx context.Context, cl *api.Client, waiting func(error)) (*api.GatewayConfig, error) {
	retry := backoff.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	told := false
	for {
		var cfg api.GatewayConfig
		err := cl.Do(ctx, "GET", "/api/v1/gateway/config", nil, &cfg)
		if err == nil {
			return &cfg, nil
		}
		if _, ok := err.(*api.UnavailableError); !ok && dspool.ErrorCode(err) != dspool.EUnavailable {
			return nil, fmt.Errorf("take the gateway's configuration from the control plane: %w", err)
		}
		if !told {
			waiting(err)
			told = true
		}
		t := time.NewTimer(retry.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
