package sshgw

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/gateway/internal/ssh"
)

// refusal is why the gateway refused one credential of a login. The
// client is told only that it was refused; the audit log gets why.
type refusal struct{ login, reason string }

func (e *refusal) Error() string { return e.reason }

// auditLogin records a login that authenticated.
func (g *Gateway) auditLogin(sc *ssh.ServerConn) {
	ext := sc.Permissions.Extensions
	how := "key " + ext[extKey]
	if ext[extKey] == "password" {
		how = "password"
	}
	if ext[extPool] != "" {
		how += ", pool " + ext[extPool]
	}
	g.cfg.Backend.Audit(context.Background(), dspool.AuditEntry{Actor: ext[extUser], Action: dspool.AuditLoginSSH,
		Target: "user " + ext[extUser], Remote: sc.RemoteAddr().String(), Outcome: dspool.AuditSuccess, Detail: how})
}

// auditRefusal records a connection that offered credentials and was
// refused, with why each was. A connection that offered none (a scanner,
// a client that gave up at the banner) is not a login and is not recorded.
func (g *Gateway) auditRefusal(remote string, err error) {
	var ae *ssh.ServerAuthError
	if !errors.As(err, &ae) {
		return
	}
	login := ""
	var reasons []string
	for _, e := range ae.Errors {
		var r *refusal
		if errors.As(e, &r) && !slices.Contains(reasons, r.reason) {
			login = r.login
			reasons = append(reasons, r.reason)
		}
	}
	if len(reasons) == 0 {
		return
	}
	g.cfg.Backend.Audit(context.Background(), dspool.AuditEntry{Actor: dspool.AuditAnonymous, Action: dspool.AuditLoginSSH,
		Target: "user " + login, Remote: remote, Outcome: dspool.AuditFailure, Detail: strings.Join(reasons, "; ")})
}

// auditBarred records a login whose credential authenticated but whose
// user is disabled: refused, with why.
func (g *Gateway) auditBarred(sc *ssh.ServerConn) {
	ext := sc.Permissions.Extensions
	g.cfg.Backend.Audit(context.Background(), dspool.AuditEntry{Actor: ext[extUser], Action: dspool.AuditLoginSSH,
		Target: "user " + ext[extUser], Remote: sc.RemoteAddr().String(), Outcome: dspool.AuditFailure, Detail: ext[extDisabled]})
}
