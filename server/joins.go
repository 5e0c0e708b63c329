package server

import (
	"context"
	"fmt"
	"time"

	"github.com/dspool/dspool"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/autoscale"
)

// newJoins makes what n new machines of pool p need to join it: each its
// own join token, which joins one node, once, within the join TTL, or
// within the pool's boot timeout and a margin where that is longer: a
// machine still queued then is removed and replaced with a new token.
func (s *Server) newJoins(ctx context.Context, p *dspool.Pool, n int) ([]autoscale.Join, error) {
	pool := p.Name
	ttl := max(s.cfg.JoinTTL, time.Duration(autoscale.Policy(p).BootTimeout)+10*time.Minute)
	expires := s.cfg.Now().Add(ttl)
	joins := make([]autoscale.Join, n)
	hashes := make([][]byte, n)
	for i := range joins {
		secret := NewSecret("dspj_")
		hashes[i] = HashSecret(secret)
		joins[i] = autoscale.Join{Server: s.cfg.JoinURL, CAPin: s.cfg.CAPin, Token: api.JoinTokenWithPin(secret, s.cfg.CAPin), Expires: expires}
	}
	if err := s.db.AddSingleUseJoinTokens(ctx, pool, hashes, expires); err != nil {
		return nil, fmt.Errorf("join tokens for pool %s: %w", pool, err)
	}
	return joins, nil
}
