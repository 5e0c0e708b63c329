package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/tlsca"
	"github.com/spf13/cobra"
)

func (a *App) loginCmd() *cobra.Command {
	var token, caHash string
	c := &cobra.Command{
		Use:   "login URL",
		Short: "Log this machine's CLI in to a pool, pinning its control plane's CA",
		Long: `Log the CLI in to the control plane at URL with an API token, and save the
login (~/.config/dspool/config.json, or DSPOOL_CONFIG).

A control plane serves HTTPS with a CA of its own. On first contact the CLI
pins that CA: with --ca-hash (the pin an admin gives you; dspool up and
dspool server print it), or, at a terminal, after you compare the pin it
shows with the admin's. Later commands trust that CA and no other, so a
machine that takes the pool's address cannot read your token. A server
whose certificate a public CA signed needs no pin.

The token comes from --token, DSPOOL_TOKEN, or standard input.`,
		Example: "  dspool login https://pool.example.com:8080 --ca-hash sha256:3f1c...\n  dspool token create --user alice | ssh alice@laptop dspool login https://pool:8080 --ca-hash sha256:3f1c...",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.loginTo(cmd.Context(), args[0], firstOf(token, a.Getenv("DSPOOL_TOKEN")), caHash)
		},
	}
	c.Flags().StringVar(&token, "token", "", "the API token (default: DSPOOL_TOKEN, else read from standard input)")
	c.Flags().StringVar(&caHash, "ca-hash", "", "the pin of the control plane's CA (sha256:HEX), as the admin gives it")
	return c
}

func (a *App) loginTo(ctx context.Context, rawURL, token, caHash string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return dspool.Invalid("URL", "%q is not a control plane's address: give https://HOST[:PORT]", rawURL)
	}
	server := u.Scheme + "://" + u.Host
	pin := ""
	if caHash != "" {
		if pin, err = tlsca.ParsePin(caHash); err != nil {
			return dspool.Invalid("--ca-hash", "%v", err)
		}
	}
	in := bufio.NewReader(a.Stdin)
	var ca *x509.Certificate
	switch {
	case u.Scheme == "http":
		if !api.LoopbackHost(u.Hostname()) {
			return dspool.Invalid("URL", "plain HTTP to another machine would send your token in clear: use https://")
		}
	default:
		if ca, err = a.trustServer(ctx, u.Host, pin, in); err != nil {
			return err
		}
	}
	if token == "" {
		if isTerminalReader(a.Stdin) {
			fmt.Fprint(a.Stderr, "API token: ")
		}
		line, _ := in.ReadString('\n')
		token = strings.TrimSpace(line)
	}
	if token == "" {
		return dspool.Invalid("--token", "no token: give --token, DSPOOL_TOKEN, or the token on standard input (an admin makes one with `dspool token create --user NAME`)")
	}
	c := Config{Server: server, Token: token}
	if ca != nil {
		if c.CA, err = a.saveCA(ca); err != nil {
			return err
		}
	}
	hc, err := api.NewHTTPClient(c.CA)
	if err != nil {
		return err
	}
	me, err := (&api.Client{Server: server, Token: token, HTTP: hc}).Whoami(ctx)
	if err != nil {
		return fmt.Errorf("log in to %s: %w", server, err)
	}
	path, err := a.saveConfig(c)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.Stderr, "logged in to %s as %s (%s", server, me.Name, path)
	if c.CA != "" {
		fmt.Fprintf(a.Stderr, "; the pinned CA in %s", c.CA)
	}
	fmt.Fprintln(a.Stderr, ")")
	return nil
}

// trustServer returns the CA to pin for the server at host: the one with
// pin, or, without a pin, the one the user accepts at a terminal; nil when
// the system's roots already trust the server.
func (a *App) trustServer(ctx context.Context, host, pin string, in *bufio.Reader) (*x509.Certificate, error) {
	name, _, err := net.SplitHostPort(host)
	if err != nil {
		name, host = host, net.JoinHostPort(host, "443")
	}
	var found *x509.Certificate
	cfg := &tls.Config{ServerName: name, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	if pin != "" {
		cfg = tlsca.PinnedConfig(name, pin, nil, func(c *x509.Certificate) { found = c })
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		if errors.Is(err, tlsca.ErrPin) {
			return nil, fmt.Errorf("the server at %s is not the pool the pin %s names: check the address and the pin with the admin (%w)", host, pin, tlsca.ErrPin)
		}
		return nil, fmt.Errorf("reach %s: %w", host, err)
	}
	chain := conn.(*tls.Conn).ConnectionState().PeerCertificates
	conn.Close()
	if pin != "" {
		return found, nil
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Intermediates: pool(chain[1:])}); err == nil {
		return nil, nil // a public CA
	}
	ca := chain[len(chain)-1]
	if !ca.IsCA {
		return nil, fmt.Errorf("the server at %s presents no CA to pin: ask the admin for its CA file and set DSPOOL_CA", host)
	}
	got := tlsca.Pin(ca)
	if !isTerminal(a.Stderr) || !isTerminalReader(a.Stdin) {
		return nil, dspool.Invalid("--ca-hash", "the server at %s has the CA %s: compare it with the admin's (dspool up and dspool server print it), then give --ca-hash %s", host, got, got)
	}
	fmt.Fprintf(a.Stderr, "The control plane at %s has the CA\n  %s\nCompare it with the pin your admin gives you (dspool up and dspool server print it).\nTrust it? [y/N] ", host, got)
	line, _ := in.ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return nil, errors.New("not logged in: the CA was not trusted")
	}
	if err := tlsca.PinnedConfig(name, got, nil, nil).VerifyConnection(tls.ConnectionState{PeerCertificates: chain}); err != nil {
		return nil, err
	}
	return ca, nil
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// saveCA writes the pinned CA beside the login, for later commands.
func (a *App) saveCA(ca *x509.Certificate) (string, error) {
	p := strings.TrimSuffix(a.defaultConfigPath(), ".json") + "-ca.crt"
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(p, tlsca.PEM(ca), 0o644); err != nil {
		return "", fmt.Errorf("save the pinned CA: %w", err)
	}
	return p, nil
}

func isTerminalReader(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && isTerminal(f)
}
