// Package kubetest runs a real Kubernetes API server for tests: Debian's
// etcd and a kube-apiserver built from the Go module proxy
// (.ci/kube-apiserver.sh), both on loopback, with no scheduler, controller
// manager or kubelet. Kubelet stands in for the last two: it places pods
// on its one node (or says why it cannot, as the scheduler would) and runs
// each placed pod's command as a process of this machine. Where the
// binaries are missing the tests skip, unless DSPOOL_REQUIRE_KUBERNETES=1
// (CI), where that is a failure.
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dspool/dspool/provider/kubernetes"
)

// Version is the kube-apiserver .ci/kube-apiserver.sh builds.
const Version = "v1.37.2"

// Cluster is an etcd and a kube-apiserver on loopback.
type Cluster struct {
	// URL is the API server's; Kubeconfig a file that reaches it as an
	// admin (system:masters) with a token; Client a client of it.
	URL, Kubeconfig string
	Client          *kubernetes.Client
	Token           string
	// UserKubeconfig reaches the API server as user "dspool", who may
	// do nothing until a Role allows it.
	UserKubeconfig string
	dir            string
	procs          []*process // the API server, then etcd
}

// APIServer finds the kube-apiserver binary: $DSPOOL_KUBE_APISERVER,
// where .ci/kube-apiserver.sh keeps it, or on the PATH ("" if none).
func APIServer() string {
	if p := os.Getenv("DSPOOL_KUBE_APISERVER"); p != "" {
		return p
	}
	dir := os.Getenv("DSPOOL_KUBE_CACHE")
	if dir == "" {
		dir = "/var/cache/dspool-ci"
	}
	if p := filepath.Join(dir, "kube-apiserver-"+Version); isExec(p) {
		return p
	}
	p, _ := exec.LookPath("kube-apiserver")
	return p
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&0o111 != 0
}

// Start starts a cluster. A nil cluster with a reason says what is
// missing to run one.
func Start() (*Cluster, string, error) {
	kapi := APIServer()
	if kapi == "" {
		return nil, "no kube-apiserver: build one with .ci/kube-apiserver.sh, or set DSPOOL_KUBE_APISERVER", nil
	}
	if !isExec(kapi) {
		return nil, "no kube-apiserver at " + kapi + " (DSPOOL_KUBE_APISERVER): build one with .ci/kube-apiserver.sh", nil
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		return nil, "no etcd: apt-get install etcd-server", nil
	}
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm" // etcd fsyncs each write: memory makes that cheap
	}
	dir, err := os.MkdirTemp(base, "dspool-kube-")
	if err != nil {
		return nil, "", err
	}
	c := &Cluster{dir: dir}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, "", err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	etcdCmd := exec.Command(etcd, "--name", "kubetest", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "kubetest="+peer,
		"--log-level", "warn")
	etcdProc, err := start(etcdCmd, filepath.Join(dir, "etcd.log"))
	if err != nil {
		return nil, "", err
	}
	c.procs = append(c.procs, etcdProc)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, "", err
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return nil, "", err
	}
	var tok, utok [16]byte
	_, _ = rand.Read(tok[:])
	_, _ = rand.Read(utok[:])
	c.Token = hex.EncodeToString(tok[:])
	userToken := hex.EncodeToString(utok[:])
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(c.Token+",admin,admin,system:masters\n"+userToken+",dspool,dspool\n"), 0o600); err != nil {
		return nil, "", err
	}
	port := strconv.Itoa(ports[2])
	c.URL = "https://127.0.0.1:" + port
	// Without a controller manager no "default" service account exists,
	// which the ServiceAccount admission plugin would require of every
	// pod; a loopback advertise address needs no endpoint reconciler.
	kapiCmd := exec.Command(kapi, "--etcd-servers="+client, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+port, "--cert-dir="+filepath.Join(dir, "certs"),
		"--service-account-issuer="+c.URL, "--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--authorization-mode=RBAC",
		"--endpoint-reconciler-type=none", "--disable-admission-plugins=ServiceAccount",
		"--service-cluster-ip-range=10.96.0.0/24", "--watch-cache=true")
	kapiProc, err := start(kapiCmd, filepath.Join(dir, "kube-apiserver.log"))
	if err != nil {
		return nil, "", err
	}
	c.procs = append([]*process{kapiProc}, c.procs...)
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: kubetest, cluster: {server: %q, certificate-authority: certs/apiserver.crt}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: kubetest, context: {cluster: kubetest, user: admin, namespace: default}}]
current-context: kubetest
`, c.URL, c.Token)
	c.UserKubeconfig = filepath.Join(dir, "kubeconfig-user")
	if err := os.WriteFile(c.UserKubeconfig, []byte(strings.Replace(kc, c.Token, userToken, 1)), 0o600); err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, "certs", "apiserver.crt")); err == nil {
			if err := os.WriteFile(c.Kubeconfig, []byte(kc), 0o600); err != nil {
				return nil, "", err
			}
			if c.Client, err = kubernetes.NewClient(kubernetes.Config{Kubeconfig: c.Kubeconfig}); err == nil {
				var b []byte
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err = c.Client.Do(ctx, http.MethodGet, "/readyz", nil, &b)
				cancel()
				if err == nil && string(b) == "ok" {
					break
				}
			}
		}
		if kapiProc.ended() || time.Now().After(deadline) {
			return nil, "", fmt.Errorf("kube-apiserver did not become ready: %s", tail(filepath.Join(dir, "kube-apiserver.log")))
		}
		time.Sleep(200 * time.Millisecond)
	}
	ok = true
	return c, "", nil
}

// process is a command started in the background.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *process) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func start(cmd *exec.Cmd, log string) (*process, error) {
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Start()
	f.Close()
	if err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// Log returns the end of the API server's log.
func (c *Cluster) Log() string { return tail(filepath.Join(c.dir, "kube-apiserver.log")) }

// Stop stops the API server and etcd and removes their files.
func (c *Cluster) Stop() {
	for _, p := range c.procs {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	c.procs = nil
	os.RemoveAll(c.dir)
}

// Namespace makes a namespace.
func (c *Cluster) Namespace(ctx context.Context, name string) error {
	return c.Client.Do(ctx, http.MethodPost, "/api/v1/namespaces", map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}, nil)
}

// Quota makes a ResourceQuota that allows no pod in namespace ns, with
// the status a quota controller would give it.
func (c *Cluster) Quota(ctx context.Context, ns string) error {
	path := "/api/v1/namespaces/" + ns + "/resourcequotas"
	if err := c.Client.Do(ctx, http.MethodPost, path, map[string]any{"apiVersion": "v1", "kind": "ResourceQuota",
		"metadata": map[string]any{"name": "no-pods"}, "spec": map[string]any{"hard": map[string]string{"pods": "0"}}}, nil); err != nil {
		return err
	}
	return c.Client.Do(ctx, http.MethodPatch, path+"/no-pods/status", map[string]any{"status": map[string]any{
		"hard": map[string]string{"pods": "0"}, "used": map[string]string{"pods": "0"}}}, nil)
}

// Skip skips t for want of a cluster, or fails it where
// DSPOOL_REQUIRE_KUBERNETES=1.
func Skip(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("DSPOOL_REQUIRE_KUBERNETES") == "1" {
		t.Fatalf("DSPOOL_REQUIRE_KUBERNETES=1, but %s", why)
	}
	t.Skip(why)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// Call is one request a Recorder passed on.
type Call struct {
	At     time.Time
	Method string // WATCH for a watch
	Path   string
}

// Recorder is a proxy in front of the API server that records every
// request, for counting what a client asks of it.
type Recorder struct {
	// Kubeconfig reaches the API server through the proxy, as the admin.
	Kubeconfig string
	srv        *httptest.Server
	mu         sync.Mutex
	calls      []Call
}

// Record starts a recording proxy.
func (c *Cluster) Record() (*Recorder, error) {
	target, _ := url.Parse(c.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // loopback, to the server's self-signed certificate
	rp.FlushInterval = -1                                                                  // watches stream
	r := &Recorder{}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m := req.Method
		if req.URL.Query().Get("watch") == "1" || req.URL.Query().Get("watch") == "true" {
			m = "WATCH"
		}
		r.mu.Lock()
		r.calls = append(r.calls, Call{At: time.Now(), Method: m, Path: req.URL.Path})
		r.mu.Unlock()
		rp.ServeHTTP(w, req)
	}))
	r.Kubeconfig = filepath.Join(c.dir, fmt.Sprintf("kubeconfig-recorder-%d", time.Now().UnixNano()))
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: recorder, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: recorder, context: {cluster: recorder, user: admin}}]
current-context: recorder
`, r.srv.URL, c.Token)
	if err := os.WriteFile(r.Kubeconfig, []byte(kc), 0o600); err != nil {
		r.srv.Close()
		return nil, err
	}
	return r, nil
}

// Calls returns the requests so far.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Close stops the proxy.
func (r *Recorder) Close() { r.srv.CloseClientConnections(); r.srv.Close() }
