package server

import (
	"context"
	"fmt"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/autoscale"
)

// newJoins makes what n new machines of pool need to join it: each its own
// join token, which joins one node, once, within the join TTL.
func (s *Server) newJoins(ctx context.Context, pool string, n int) ([]autoscale.Join, error) {
	expires := s.cfg.Now().Add(s.cfg.JoinTTL)
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
