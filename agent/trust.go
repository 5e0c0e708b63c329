package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/atomicfile"
	"github.com/dspool/dspool/share"
	"github.com/dspool/dspool/tlsca"
)

// trust decides how the agent knows its server, in this order: the CA it
// pinned when it joined (kept with its identity), the CA pin its join token
// carries (verified on first contact), the --server-ca file, the system's
// roots. Plain HTTP is for a server on this machine only: the link carries
// the node's credential, users' secrets and the setup script the agent runs
// as root.
func (ag *Agent) trust(pinnedPEM string) error {
	u, err := url.Parse(ag.cfg.Server)
	if err != nil || u.Host == "" {
		return fmt.Errorf("server URL %q: want https://HOST[:PORT]", ag.cfg.Server)
	}
	switch u.Scheme {
	case "http":
		if !api.LoopbackHost(u.Hostname()) {
			return fmt.Errorf("server %s: plain HTTP to another machine is refused: the node's credential, users' secrets and the pool's setup script (run as root) would cross the network in clear. Use https:// (the control plane serves HTTPS by default)", ag.cfg.Server)
		}
		ag.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	case "https":
		// The tokens of one growth (comma-separated) carry one pin.
		first, _, _ := strings.Cut(ag.cfg.JoinToken, ",")
		_, pin := api.SplitJoinToken(first)
		switch {
		case pinnedPEM != "":
			ca, err := tlsca.ParsePEM([]byte(pinnedPEM))
			if err != nil {
				return fmt.Errorf("the CA pinned in %s: %w (remove the file to join again)", ag.identityPath(), err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			ag.pin = tlsca.Pin(ca)
			ag.tls = tlsca.PinnedConfig(u.Hostname(), "", roots, nil)
		case pin != "":
			if ag.pin, err = tlsca.ParsePin(pin); err != nil {
				return fmt.Errorf("join token: %w", err)
			}
			ag.tls = tlsca.PinnedConfig(u.Hostname(), ag.pin, nil, ag.pinned.set)
		default:
			if ag.tls, err = api.TLSConfig(ag.cfg.ServerCA); err != nil {
				return fmt.Errorf("--server-ca: %w", err)
			}
		}
	default:
		return fmt.Errorf("server URL %q: want https://HOST[:PORT]", ag.cfg.Server)
	}
	if u.Scheme == "https" {
		// Every SSH channel and Jupyter request dials a connection of its
		// own: resuming the link's TLS session spares each the
		// certificate's signature and its check. A ticket is good only
		// with the server that issued it, verified on first contact.
		ag.tls.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	ag.http = api.HTTPClientWith(ag.tls)
	return nil
}

// explainTLS turns a refusal of the server's certificate into what to
// check.
func (ag *Agent) explainTLS(err error) error {
	if errors.Is(err, tlsca.ErrPin) {
		return fmt.Errorf("the server at %s is not this pool's control plane: its certificate does not chain to the CA %s that the join token (or this node's first contact) pinned. "+
			"Check --server, and that the join token is current (an admin prints one with `dspool pool join-token POOL`) (%w)", ag.cfg.Server, ag.pin, tlsca.ErrPin)
	}
	return err
}

// pinnedCA is the CA a first contact verified against the join token's pin.
type pinnedCA struct {
	mu sync.Mutex
	ca *x509.Certificate
}

func (p *pinnedCA) set(ca *x509.Certificate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ca = ca
}

// pem is the pinned CA in PEM, "" before a first contact.
func (p *pinnedCA) pem() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ca == nil {
		return ""
	}
	return string(tlsca.PEM(p.ca))
}

// shareTrouble says why the node cannot take work on its share now ("" when
// it can): not reachable, or no longer the share it joined with (unmounted:
// the mount point is an empty directory of the node's own disk).
func (ag *Agent) shareTrouble() string {
	id, err := share.ReadID(ag.cfg.Share)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, serr := os.Stat(ag.cfg.Share); serr != nil {
			return "the share is not reachable at " + ag.cfg.Share + ": " + serr.Error()
		}
		if ag.shareID == "" {
			return ""
		}
		return fmt.Sprintf("the share at %s has no %s: it is not mounted; mount the pool's share there", ag.cfg.Share, share.IDFile)
	case err != nil:
		return "the share at " + ag.cfg.Share + ": " + err.Error()
	case ag.shareID != "" && id != ag.shareID:
		return fmt.Sprintf("the share at %s is another pool's now (its %s changed): mount this pool's share there", ag.cfg.Share, share.IDFile)
	}
	return ""
}

// rotateCredential swaps the node's credential for a new one at each start
// of the agent, so a credential copied from this machine's disk stops
// working the next time the agent starts. The new one is kept before it is
// used; the server honours the old one until then.
func (ag *Agent) rotateCredential(ctx context.Context) error {
	cl := ag.client()
	cl.Token = ag.cred
	resp, err := cl.RotateCredential(ctx)
	if err != nil {
		return fmt.Errorf("rotate the node's credential: %w", ag.explainTLS(err))
	}
	b, err := os.ReadFile(ag.identityPath())
	if err != nil {
		return err
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return fmt.Errorf("read %s: %w", ag.identityPath(), err)
	}
	id.Credential = resp.Credential
	if err := ag.saveIdentity(id); err != nil {
		return err
	}
	ag.cred = resp.Credential
	return nil
}

// saveIdentity replaces node.json (0600) whole: a crash leaves the old
// identity or the new.
func (ag *Agent) saveIdentity(id identity) error {
	b, _ := json.MarshalIndent(id, "", "  ")
	if err := atomicfile.Write(ag.identityPath(), b, 0o600); err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	return nil
}
