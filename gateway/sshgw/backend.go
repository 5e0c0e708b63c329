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

func (b serverBackend) AuthenticatePassword(ctx context.Context, login dspool.Login, pw, remote string) (*dspool.User, error) {
	return b.s.AuthenticatePassword(ctx, login, pw, remote)
}

func (b serverBackend) OpenSession(ctx context.Context, u *dspool.User, pool, remote, how string, progress func(string)) (Session, error) {
	cred := server.KeyCredential(how)
	if how == "password" {
		cred = server.PasswordCredential
	}
	l, err := b.s.OpenSession(ctx, u, pool, remote, cred, progress)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (b serverBackend) Audit(ctx context.Context, e dspool.AuditEntry) { b.s.Audit(ctx, e) }
