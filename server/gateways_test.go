package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"golang.org/x/crypto/ssh"
)

// TestGatewayConfigHandsThePoolsHostKey: a gateway of its own process gets
// the pool's host key, one that parses, and the heartbeat it is to keep.
func TestGatewayConfigHandsThePoolsHostKey(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	var cfg api.GatewayConfig
	if err := p.Admin.Do(context.Background(), "GET", "/api/v1/gateway/config", nil, &cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := ssh.ParsePrivateKey([]byte(cfg.HostKey)); err != nil {
		t.Errorf("the host key handed to gateways does not parse: %v", err)
	}
	if cfg.Heartbeat <= 0 {
		t.Errorf("heartbeat %v, want the control plane's", cfg.Heartbeat)
	}
}

// TestGatewayHeartbeatEndsWhatDidNotSurvive: a gateway's first heartbeat
// after a restart lists its connections; one whose session the control
// plane does not have is told to end, saying why, and one of another
// user's session is not let in.
func TestGatewayHeartbeatEndsWhatDidNotSurvive(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{})
	var reply api.GatewayHeartbeatReply
	hb := api.GatewayHeartbeat{Gateway: "g-test", Conns: []api.GatewayConnActivity{
		{Conn: "c-1", Session: "s-gone", User: "ada", How: "password", In: 10, Out: 20},
	}}
	if err := p.Admin.Do(context.Background(), "POST", "/api/v1/gateway/heartbeat", hb, &reply); err != nil {
		t.Fatal(err)
	}
	if len(reply.End) != 1 || reply.End[0].Conn != "c-1" || !strings.Contains(reply.End[0].Reason, "log in again") {
		t.Fatalf("the heartbeat's answer: %+v; want c-1 to end, saying why and what to do", reply)
	}
	// Nothing was taken up: a second heartbeat says the same.
	reply = api.GatewayHeartbeatReply{}
	if err := p.Admin.Do(context.Background(), "POST", "/api/v1/gateway/heartbeat", hb, &reply); err != nil {
		t.Fatal(err)
	}
	if len(reply.End) != 1 {
		t.Fatalf("the second heartbeat's answer: %+v; want c-1 to end again", reply)
	}
	// A channel of a connection the control plane does not hold is
	// refused, naming it.
	err := p.Admin.Do(context.Background(), "POST", "/api/v1/gateway/channel", api.GatewayChannel{Gateway: "g-test", Conn: "c-1", Kind: api.ChannelExec}, nil)
	if err == nil || !strings.Contains(err.Error(), "holds no connection c-1") {
		t.Fatalf("a channel of an unknown connection: %v; want a refusal naming it", err)
	}
}
