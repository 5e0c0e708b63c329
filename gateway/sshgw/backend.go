package sshgw

import (
	"context"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/server"
)

// ServerBackend is the control plane s as the gateway's backend.
func ServerBackend(s *server.Server) Backend { return serverBackend{s} }

type serverBackend struct{ s *server.Server }

func (b serverBackend) Authenticate(ctx context.Context, login dspool.Login, fp string) (*dspool.User, error) {
	return b.s.Authenticate(ctx, login, fp)
}

func (b serverBackend) AuthenticatePassword(ctx context.Context, login dspool.Login, pw string) (*dspool.User, error) {
	return b.s.AuthenticatePassword(ctx, login, pw)
}

func (b serverBackend) OpenSession(ctx context.Context, u *dspool.User, pool, remote string, progress func(string)) (Session, error) {
	l, err := b.s.OpenSession(ctx, u, pool, remote, progress)
	if err != nil {
		return nil, err
	}
	return l, nil
}
