package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dspool/dspool/provider/kubernetes/kapi"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool/yamljson"
)

// Client is a small client of the Kubernetes API: JSON requests with the
// official API types, and watches. It is what the provider needs and no
// more (decision 0036: client-go costs the build more than the seven calls
// it would make).
type Client struct {
	server    string
	namespace string // the context's or the pod's namespace ("" none)
	hc        *http.Client
	auth      func(ctx context.Context, renew bool) (string, error) // a bearer token; nil: none

	calls sync.Map // "METHOD what" -> *atomic.Int64
}

// Config says how to reach a cluster.
type Config struct {
	// Kubeconfig is a kubeconfig file ("": in-cluster where the process
	// runs in a pod, else $KUBECONFIG or ~/.kube/config); Context one of
	// its contexts ("": its current context).
	Kubeconfig, Context string
}

// inCluster is where Kubernetes mounts a pod's service account (a
// variable for tests).
var inCluster = "/var/run/secrets/kubernetes.io/serviceaccount"

// NewClient returns a client of the cluster cfg names.
func NewClient(cfg Config) (*Client, error) {
	if cfg.Kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		if _, err := os.Stat(filepath.Join(inCluster, "token")); err == nil {
			return inClusterClient()
		}
	}
	path := cfg.Kubeconfig
	if path == "" {
		path, _, _ = strings.Cut(os.Getenv("KUBECONFIG"), string(os.PathListSeparator))
	}
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("no kubeconfig: not in a pod, KUBECONFIG unset and no home directory")
		}
		path = filepath.Join(home, ".kube", "config")
	}
	return kubeconfigClient(path, cfg.Context)
}

func inClusterClient() (*Client, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if port == "" {
		port = "443"
	}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(inCluster, "ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("in-cluster: the service account's CA (%s/ca.crt): %v", inCluster, err)
	}
	ns, _ := os.ReadFile(filepath.Join(inCluster, "namespace"))
	c := newClient("https://"+joinHostPort(host, port), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	c.namespace = strings.TrimSpace(string(ns))
	// Projected service account tokens rotate: read the file again each
	// minute, as client-go does.
	c.auth = fileToken(filepath.Join(inCluster, "token"))
	return c, nil
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

func newClient(server string, tc *tls.Config) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = 8
	return &Client{server: strings.TrimSuffix(server, "/"), hc: &http.Client{Transport: tr}}
}

func fileToken(path string) func(context.Context, bool) (string, error) {
	var mu sync.Mutex
	var tok string
	var read time.Time
	return func(_ context.Context, renew bool) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if tok == "" || renew || time.Since(read) > time.Minute {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", fmt.Errorf("token file: %w", err)
			}
			tok, read = strings.TrimSpace(string(b)), time.Now()
		}
		return tok, nil
	}
}

// kubeconfig is the part of a kubeconfig file the client reads.
type kubeconfig struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthority     string `json:"certificate-authority"`
			CertificateAuthorityData string `json:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
			TLSServerName            string `json:"tls-server-name"`
			ProxyURL                 string `json:"proxy-url"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string   `json:"name"`
		User authInfo `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster   string `json:"cluster"`
			User      string `json:"user"`
			Namespace string `json:"namespace"`
		} `json:"context"`
	} `json:"contexts"`
}

type authInfo struct {
	Token                 string      `json:"token"`
	TokenFile             string      `json:"tokenFile"`
	ClientCertificate     string      `json:"client-certificate"`
	ClientCertificateData string      `json:"client-certificate-data"`
	ClientKey             string      `json:"client-key"`
	ClientKeyData         string      `json:"client-key-data"`
	Exec                  *execConfig `json:"exec"`
	AuthProvider          any         `json:"auth-provider"`
	Username              string      `json:"username"`
}

// execConfig is a credential plugin (client.authentication.k8s.io): how
// EKS, GKE and AKS (kubelogin) kubeconfigs get their tokens.
type execConfig struct {
	APIVersion string   `json:"apiVersion"`
	Command    string   `json:"command"`
	Args       []string `json:"args"`
	Env        []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"env"`
}

func kubeconfigClient(path, ctxName string) (*Client, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	js, err := yamljson.Convert(raw, yamljson.Limits{})
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	var kc kubeconfig
	if err := json.Unmarshal(js, &kc); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if ctxName == "" {
		ctxName = kc.CurrentContext
	}
	var clusterName, userName, ns string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == ctxName {
			clusterName, userName, ns, found = c.Context.Cluster, c.Context.User, c.Context.Namespace, true
		}
	}
	if !found {
		return nil, fmt.Errorf("kubeconfig %s has no context %q", path, ctxName)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	var server, proxy string
	found = false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		cl := c.Cluster
		server, proxy = cl.Server, cl.ProxyURL
		tc.ServerName = cl.TLSServerName
		tc.InsecureSkipVerify = cl.InsecureSkipTLSVerify
		var ca []byte
		switch {
		case cl.CertificateAuthorityData != "":
			if ca, err = base64.StdEncoding.DecodeString(cl.CertificateAuthorityData); err != nil {
				return nil, fmt.Errorf("kubeconfig %s: cluster %s: certificate-authority-data: %w", path, c.Name, err)
			}
		case cl.CertificateAuthority != "":
			if ca, err = os.ReadFile(rel(cl.CertificateAuthority)); err != nil {
				return nil, fmt.Errorf("kubeconfig %s: cluster %s: %w", path, c.Name, err)
			}
		}
		if ca != nil {
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(ca) {
				return nil, fmt.Errorf("kubeconfig %s: cluster %s: no certificate in its certificate authority", path, c.Name)
			}
		}
	}
	if !found || server == "" {
		return nil, fmt.Errorf("kubeconfig %s: context %s names cluster %q, which it does not have with a server", path, ctxName, clusterName)
	}
	var user *authInfo
	for i, u := range kc.Users {
		if u.Name == userName {
			user = &kc.Users[i].User
		}
	}
	c := newClient(server, tc)
	c.namespace = ns
	if proxy != "" {
		u, err := url.Parse(proxy)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: proxy-url: %w", path, err)
		}
		c.hc.Transport.(*http.Transport).Proxy = http.ProxyURL(u)
	}
	if user == nil {
		return c, nil
	}
	cert, key := []byte(nil), []byte(nil)
	load := func(data, file string) ([]byte, error) {
		if data != "" {
			return base64.StdEncoding.DecodeString(data)
		}
		if file != "" {
			return os.ReadFile(rel(file))
		}
		return nil, nil
	}
	if cert, err = load(user.ClientCertificateData, user.ClientCertificate); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: user %s: client certificate: %w", path, userName, err)
	}
	if key, err = load(user.ClientKeyData, user.ClientKey); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: user %s: client key: %w", path, userName, err)
	}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: user %s: %w", path, userName, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	switch {
	case user.Token != "":
		tok := user.Token
		c.auth = func(context.Context, bool) (string, error) { return tok, nil }
	case user.TokenFile != "":
		c.auth = fileToken(rel(user.TokenFile))
	case user.Exec != nil:
		c.auth = execToken(user.Exec, dir)
	case user.AuthProvider != nil:
		return nil, fmt.Errorf("kubeconfig %s: user %s uses an auth-provider, which Kubernetes removed: use its exec credential plugin (kubelogin, gke-gcloud-auth-plugin)", path, userName)
	}
	return c, nil
}

// execToken runs a credential plugin for a token, and again when it
// expires or the server refuses it.
func execToken(e *execConfig, dir string) func(context.Context, bool) (string, error) {
	var mu sync.Mutex
	var tok string
	var until time.Time
	return func(ctx context.Context, renew bool) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if tok != "" && !renew && (until.IsZero() || time.Now().Before(until.Add(-time.Minute))) {
			return tok, nil
		}
		cmd := exec.CommandContext(ctx, e.Command, e.Args...)
		cmd.Dir = dir
		cmd.Env = os.Environ()
		for _, kv := range e.Env {
			cmd.Env = append(cmd.Env, kv.Name+"="+kv.Value)
		}
		api := e.APIVersion
		if api == "" {
			api = "client.authentication.k8s.io/v1"
		}
		cmd.Env = append(cmd.Env, `KUBERNETES_EXEC_INFO={"apiVersion":"`+api+`","kind":"ExecCredential","spec":{"interactive":false}}`)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("credential plugin %s: %w: %s", e.Command, err, strings.TrimSpace(stderr.String()))
		}
		var cred struct {
			Status struct {
				Token               string    `json:"token"`
				ExpirationTimestamp time.Time `json:"expirationTimestamp"`
			} `json:"status"`
		}
		if err := json.Unmarshal(out, &cred); err != nil || cred.Status.Token == "" {
			return "", fmt.Errorf("credential plugin %s gave no token (%v)", e.Command, err)
		}
		tok, until = cred.Status.Token, cred.Status.ExpirationTimestamp
		return tok, nil
	}
}

// Namespace is the namespace of the client's context, or of the pod it
// runs in ("" when neither says).
func (c *Client) Namespace() string { return c.namespace }

// APIError is what the API server answered with a status other than 2xx:
// its Status object.
type APIError struct {
	Code    int
	Reason  kapi.StatusReason
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, e.Reason, e.Message)
}

// IsNotFound reports whether err is the API's 404.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == http.StatusNotFound
}

// Calls returns how many requests were sent, by method and resource
// ("POST pods", "WATCH pods").
func (c *Client) Calls() map[string]int64 {
	out := map[string]int64{}
	c.calls.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

func (c *Client) count(what string) {
	v, _ := c.calls.LoadOrStore(what, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// resource names what a path is about, for Calls: the last resource
// name in it ("pods", "secrets", "status").
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := len(parts) - 1; i > 0; i-- {
		switch parts[i-1] {
		case "namespaces":
			if i == len(parts)-1 {
				return "namespaces"
			}
			continue
		}
		switch p := parts[i]; p {
		case "pods", "secrets", "namespaces", "status", "resourcequotas", "nodes", "events":
			return p
		}
	}
	return parts[len(parts)-1]
}

// request sends one request and returns the response (2xx) or an
// *APIError; a 401 is retried once with a renewed token.
func (c *Client) request(ctx context.Context, method, path string, query url.Values, body any, contentType string) (*http.Response, error) {
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	u := c.server + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	what := method + " " + resourceOf(path)
	if query.Get("watch") == "1" {
		what = "WATCH " + resourceOf(path)
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "dspool")
		if body != nil {
			if contentType == "" {
				contentType = "application/json"
			}
			req.Header.Set("Content-Type", contentType)
		}
		if c.auth != nil {
			tok, err := c.auth(ctx, attempt > 0)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		c.count(what)
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode/100 == 2 {
			return resp, nil
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && c.auth != nil {
			continue
		}
		e := &APIError{Code: resp.StatusCode, Message: strings.TrimSpace(string(b))}
		var st kapi.Status
		if json.Unmarshal(b, &st) == nil && st.Message != "" {
			e.Reason, e.Message = st.Reason, st.Message
		}
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
		return nil, e
	}
}

// Do sends a request with body as JSON and decodes the answer into out
// (nil: dropped; a *[]byte: as it is).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	ct := ""
	if method == http.MethodPatch {
		ct = "application/merge-patch+json"
	}
	resp, err := c.request(ctx, method, path, nil, body, ct)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch out := out.(type) {
	case nil:
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	case *[]byte:
		*out, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// List gets a list at path with a label selector into out.
func (c *Client) List(ctx context.Context, path, selector string, out any) error {
	q := url.Values{}
	if selector != "" {
		q.Set("labelSelector", selector)
	}
	resp, err := c.request(ctx, http.MethodGet, path, q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// WatchEvent is one event of a watch; Object is the object, or a Status
// for an ERROR.
type WatchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// Watch watches path from resourceVersion rv, with bookmarks, calling
// each for every event until the server ends the watch (after timeout),
// ctx ends, or each returns an error.
func (c *Client) Watch(ctx context.Context, path, selector, rv string, timeout time.Duration, each func(WatchEvent) error) error {
	q := url.Values{"watch": {"1"}, "allowWatchBookmarks": {"true"}, "resourceVersion": {rv},
		"timeoutSeconds": {fmt.Sprint(int(timeout.Seconds()))}}
	if selector != "" {
		q.Set("labelSelector", selector)
	}
	resp, err := c.request(ctx, http.MethodGet, path, q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var ev WatchEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if ev.Type == "ERROR" {
			var st kapi.Status
			_ = json.Unmarshal(ev.Object, &st)
			return &APIError{Code: int(st.Code), Reason: st.Reason, Message: st.Message}
		}
		if err := each(ev); err != nil {
			return err
		}
	}
}
