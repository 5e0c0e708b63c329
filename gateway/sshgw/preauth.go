package sshgw

import "net"

// preauth counts the connections that have not authenticated yet, in
// total and per source (frontdoor.Source), so that unauthenticated
// clients cannot take every slot from everyone else. When every slot is
// taken, a connection from a source that holds fewer than the largest
// holder takes that holder's oldest slot (whose connection is closed):
// to lock out a fresh address, an attacker then needs as many addresses
// as there are slots. Its methods are called with Gateway.mu held.
type preauth struct {
	max, perSource int
	n              int
	bySource       map[string][]*slot // oldest first
}

// slot is a connection's place among the unauthenticated ones.
type slot struct {
	c    net.Conn
	src  string
	held bool
}

// admit returns a slot for c from src, or nil when it must be refused;
// victim, when not nil, is the connection whose slot it took, to close.
func (p *preauth) admit(c net.Conn, src string) (s *slot, victim net.Conn) {
	mine := len(p.bySource[src])
	if mine >= p.perSource {
		return nil, nil
	}
	if p.n >= p.max {
		big := p.largest()
		// Taking a slot from a source that would then hold no more than
		// this one gains nothing in fairness.
		if len(p.bySource[big]) <= mine+1 {
			return nil, nil
		}
		old := p.bySource[big][0]
		p.release(old)
		victim = old.c
	}
	s = &slot{c: c, src: src, held: true}
	p.bySource[src] = append(p.bySource[src], s)
	p.n++
	return s, victim
}

// largest is the source that holds the most slots.
func (p *preauth) largest() string {
	big, most := "", 0
	for src, ss := range p.bySource {
		if len(ss) > most {
			big, most = src, len(ss)
		}
	}
	return big
}

// release frees s (once: again is a no-op).
func (p *preauth) release(s *slot) {
	if !s.held {
		return
	}
	s.held = false
	p.n--
	ss := p.bySource[s.src]
	for i, x := range ss {
		if x == s {
			ss = append(ss[:i:i], ss[i+1:]...)
			break
		}
	}
	if len(ss) == 0 {
		delete(p.bySource, s.src)
	} else {
		p.bySource[s.src] = ss
	}
}
