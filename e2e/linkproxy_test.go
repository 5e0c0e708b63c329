package e2e_test

import (
	"net"
	"sync"
	"testing"
)

// linkProxy forwards TCP connections from an agent to the control plane,
// and cuts the link when told: a partition stalls every connection (what
// was sent waits, as TCP's retransmissions would make it wait, and new
// connections hang) until it heals; a reset closes them, and refuses new
// ones until it heals; a one-way partition stalls what the agent sends
// and lets through what the control plane sends.
type linkProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	heal   *sync.Cond
	cut    bool
	reset  bool
	oneWay bool // a cut stalls only the agent's bytes
	conns  map[net.Conn]bool
}

func startLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.heal = sync.NewCond(&p.mu)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *linkProxy) addr() string { return p.ln.Addr().String() }

// pass waits while the link is partitioned for bytes the agent sends (up)
// or that the control plane sends, and reports whether they may go through
// (false: reset, or the proxy is closing).
func (p *linkProxy) pass(up bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	stalled := func() bool { return p.cut && !p.reset && (up || !p.oneWay) }
	for stalled() {
		p.heal.Wait()
	}
	return p.conns != nil && !(p.cut && p.reset)
}

func (p *linkProxy) forward(c net.Conn) {
	if !p.pass(false) {
		c.Close()
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.conns == nil {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	go p.pipe(s, c, true)
	p.pipe(c, s, false)
}

func (p *linkProxy) pipe(dst, src net.Conn, up bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && (!p.pass(up) || write(dst, buf[:n]) != nil) {
			break
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
}

func write(c net.Conn, b []byte) error {
	_, err := c.Write(b)
	return err
}

// cutLink cuts the link: a reset closes every connection now.
func (p *linkProxy) cutLink(reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.reset, p.oneWay = true, reset, false
	if reset {
		for c := range p.conns {
			c.Close()
		}
	}
}

// muteAgent partitions the link one way: what the agent sends waits.
func (p *linkProxy) muteAgent() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.reset, p.oneWay = true, false, true
}

// healLink lets bytes through again, those that waited first.
func (p *linkProxy) healLink() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.reset, p.oneWay = false, false, false
	p.heal.Broadcast()
}

// waitHealed waits until the link is not cut.
func (p *linkProxy) waitHealed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.cut && p.conns != nil {
		p.heal.Wait()
	}
}

func (p *linkProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.cut, p.reset = true, true
	p.heal.Broadcast()
}
