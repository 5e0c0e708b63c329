package netns_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool/internal/netns"
)

// TestHosts: two hosts reach each other, a process started in Do is on its
// host, and Down leaves no namespace, route or process behind.
func TestHosts(t *testing.T) {
	cfg := netns.Config{Net: "10.76.0", Prefix: "dspnt", Switch: "dspntsw", N: 2}
	h, err := netns.Up(cfg)
	if errors.Is(err, netns.ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	down := true
	defer func() {
		if down {
			_ = h.Down()
		}
	}()
	ln, err := h.Listen(1, "tcp", h.Addr(1)+":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Write([]byte("hello from 1"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h.Dialer(2, &net.Dialer{})(ctx, "tcp", h.Addr(1)+":7000")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "hello from 1" {
		t.Fatalf("read %q from host 1; want hello from 1", got)
	}
	if _, err := net.DialTimeout("tcp", h.Addr(1)+":7000", time.Second); err == nil {
		t.Fatal("this machine reached host 1; want the range unreachable from it")
	}

	// A process started in Do is on the host, and Down ends it.
	var addrs strings.Builder
	show := exec.Command("ip", "-brief", "addr", "show", "eth0")
	show.Stdout = &addrs
	if err := h.Do(2, show.Run); err != nil || !strings.Contains(addrs.String(), h.Addr(2)+"/24") {
		t.Fatalf("ip addr in Do: %v, %q; want host 2's address", err, addrs.String())
	}
	sleep := h.Command(1, "sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	// nsenter enters the namespace after it starts: wait until it has,
	// or Down may look before it is there to be found.
	in := func() bool {
		out, _ := exec.Command("ip", "netns", "pids", h.Name(1)).Output()
		return slices.Contains(strings.Fields(string(out)), strconv.Itoa(sleep.Process.Pid))
	}
	for deadline := time.Now().Add(10 * time.Second); !in(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the process started on host 1 did not enter its namespace in 10 s")
		}
	}
	down = false
	if err := h.Down(); err != nil {
		t.Fatal(err)
	}
	if err := sleep.Wait(); err == nil {
		t.Fatal("a process on host 1 outlived Down")
	}
	for _, name := range []string{"dspnt1", "dspnt2", "dspntsw"} {
		if _, err := os.Stat("/run/netns/" + name); err == nil {
			t.Errorf("namespace %s is still there", name)
		}
	}
	if out, _ := exec.Command("ip", "route", "show", "10.76.0.0/24").Output(); len(out) > 0 {
		t.Errorf("route left: %s", out)
	}
}
