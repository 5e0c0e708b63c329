package e2e_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dspool e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestTLS: a control plane serving HTTPS with a private certificate; the
// CLI and an agent on another "machine" trust it explicitly, jobs run and SSH
// sessions (whose bytes cross the agent's connections) work through it.
func TestTLS(t *testing.T) {
	requireRoot(t)
	requireSSHClients(t)
	ctx := context.Background()
	dir := tempDir(t)
	cert, key := selfSigned(t, dir)
	const admin = "e2eadm17"
	removeAccountAfter(t, admin)
	addr, sshAddr := freeAddr(t), freeAddr(t)
	data := filepath.Join(dir, "data")
	share := filepath.Join(data, "share")
	config := writeFile(t, "server-*.yaml", fmt.Sprintf(`listen: %s
ssh_listen: %s
tls_cert: %s
tls_key: %s
data: %s
share: %s
admin: %s
uid_base: %d
kill_grace: 1s
heartbeat: 200ms
`, addr, sshAddr, cert, key, data, share, admin, uidBase(17)))
	startServer(t, dir, "1", config)
	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + addr
	env := []string{"DSPOOL_SERVER=" + url, "DSPOOL_TOKEN=" + strings.TrimSpace(string(tok)),
		"DSPOOL_CONFIG=" + filepath.Join(dir, "none.json")}

	// Not trusted: the error says what to do.
	_, stderr, code := cli(t, env, "user", "list")
	if code == 0 || !strings.Contains(stderr, "DSPOOL_CA") {
		t.Fatalf("without the CA: exit %d, %q; want a refusal that names DSPOOL_CA", code, stderr)
	}
	env = append(env, "DSPOOL_CA="+cert)
	cliOK(t, env, "user", "list")
	// Plain HTTP is not served on the TLS port.
	if _, stderr, code := cli(t, []string{"DSPOOL_SERVER=http://" + addr, "DSPOOL_TOKEN=x", "DSPOOL_CONFIG=" + filepath.Join(dir, "none.json")}, "user", "list"); code == 0 {
		t.Fatalf("plain HTTP to the TLS port worked: %q", stderr)
	}

	hc, err := api.NewHTTPClient(cert)
	if err != nil {
		t.Fatal(err)
	}
	adm := &api.Client{Server: url, Token: strings.TrimSpace(string(tok)), HTTP: hc}
	if _, err := adm.ApplyPools(ctx, []*dspool.Pool{{Name: "default", Provider: dspool.Provider(dspool.ProviderStatic),
		Node: dspool.NodeSize{CPUs: 2000, Memory: 2 << 30}, Count: 1}}); err != nil {
		t.Fatal(err)
	}
	join, err := adm.JoinToken(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	adir := filepath.Join(dir, "agent")
	if err := os.Mkdir(adir, 0o755); err != nil {
		t.Fatal(err)
	}
	startAgent(t, adir, "--server", url, "--server-ca", cert, "--join-token", join.Token, "--name", "tls-1",
		"--share", share, "--state", filepath.Join(adir, "state"), "--cpus", "2", "--memory", "2GiB")
	waitAPINodes(t, ctx, adm, 1)
	out := cliOK(t, env, "job", "submit", "--wait", "--", "sh", "-c", "echo over-tls")
	if out != "over-tls\n" {
		t.Fatalf("job over TLS printed %q, want its output", out)
	}

	// An SSH session: its stdin and stdout cross the agent's TLS data
	// connection.
	cliOK(t, env, "user", "create", "e2etls17")
	removeAccountAfter(t, "e2etls17")
	keyFile := filepath.Join(dir, "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	cliOK(t, env, "key", "add", "--user", "e2etls17", keyFile+".pub")
	_, port, _ := net.SplitHostPort(sshAddr)
	payload := bytes.Repeat([]byte("tls "), 500000)
	cmd := exec.Command("ssh", "-F", "/dev/null", "-i", keyFile, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", port, "e2etls17@127.0.0.1", "cat")
	cmd.Stdin = bytes.NewReader(payload)
	got, err := cmd.Output()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("ssh cat over the TLS agent: %d bytes back of %d, %v", len(got), len(payload), err)
	}
}
