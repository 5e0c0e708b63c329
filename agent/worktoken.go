package agent

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/dspool/dspool/internal/atomicfile"
)

// Work on the pool calls the API as its user with no setup: every job and
// session process gets DSPOOL_SERVER (this agent's server), DSPOOL_TOKEN
// (the token the control plane made for that attempt or session, good only
// while it runs) and, when the server's certificate chains to a CA this
// agent was given or pinned, DSPOOL_CA: a copy of that CA, which is public,
// in the node's runtime directory, readable by all (the CLI and the Python
// SDK read the same variables). The token lives only in the environment of
// the work's own processes, which only their user and root may read, and
// the agent never logs it or writes it down
// (docs/decisions/0021-work-tokens.md).

// caFileName is the CA's file in the node's runtime directory.
const caFileName = "ca.crt"

// workEnv is the environment that lets work call the API with token;
// nothing without one (a control plane that gives none).
func (ag *Agent) workEnv(token string) []string {
	if token == "" {
		return nil
	}
	env := []string{"DSPOOL_SERVER=" + ag.cfg.Server, "DSPOOL_TOKEN=" + token}
	if ag.caFile != "" {
		env = append(env, "DSPOOL_CA="+ag.caFile)
	}
	return env
}

// publishCA writes the CA that this agent trusts its server by into the
// node's runtime directory (0644), for work to verify the server with: the
// CA the node pinned when it joined, else the --server-ca file. With
// neither (plain HTTP on loopback, or a certificate the system trusts)
// work needs none.
func (ag *Agent) publishCA() error {
	ag.caFile = ""
	if u, err := url.Parse(ag.cfg.Server); err != nil || u.Scheme != "https" || ag.runtime == "" {
		return nil
	}
	var pem []byte
	if b, err := os.ReadFile(ag.identityPath()); err == nil {
		var id identity
		if json.Unmarshal(b, &id) == nil && id.CA != "" {
			pem = []byte(id.CA)
		}
	}
	if pem == nil && ag.cfg.ServerCA != "" {
		b, err := os.ReadFile(ag.cfg.ServerCA)
		if err != nil {
			return fmt.Errorf("the server's CA for work: %w", err)
		}
		pem = b
	}
	if pem == nil {
		return nil
	}
	f := filepath.Join(ag.runtime, caFileName)
	if err := atomicfile.Write(f, pem, 0o644); err != nil {
		return fmt.Errorf("the server's CA for work: %w", err)
	}
	ag.caFile = f
	return nil
}
