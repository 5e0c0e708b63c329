// Package armfake is a local stand-in for the Azure Resource Manager
// endpoints of virtual machine scale sets that provider/azurevmss calls:
// get and update (PATCH) a scale set, list its instances with their
// instance view, delete instances, and the status of long-running
// operations. Answers have the shapes of the published REST API
// (Microsoft.Compute), including asynchronous operations
// (Azure-AsyncOperation), throttling (429 with Retry-After) and errors
// ({"error": {"code", "message"}}). Every call is recorded.
package armfake

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Server is the fake, over TLS on loopback.
type Server struct {
	*httptest.Server

	mu    sync.Mutex
	sets  map[string]*ScaleSet // by "sub/rg/name", lowercase
	ops   map[string]*op
	calls []Call
	seq   int
}

// Call is one request the fake answered.
type Call struct {
	At                  time.Time
	Method, Path, Query string
	Body                []byte
	Status              int
}

// ScaleSet is a scale set of the fake, and what it should do.
type ScaleSet struct {
	Name     string
	Location string
	SKU      string
	Capacity int64
	Upgrade  string // Manual (default), Automatic, Rolling
	Spot     bool
	Flexible bool
	// Hold keeps new instances provisioning (Creating) until released.
	Hold bool
	// OpPolls is how many times an operation answers InProgress before
	// it ends (default 1), and OpTime how long it runs at most (default
	// 200 ms): it ends at whichever comes first, polled or not.
	OpPolls int
	OpTime  time.Duration
	// FailProvisioning, when set, is the code new instances fail to
	// provision with ("AllocationFailed").
	FailProvisioning string
	// Refuse, when set, is the error every update of the scale set gets
	// (status, code and message, as Azure's).
	Refuse *Refusal
	// Throttle is how many of the next requests about the scale set are
	// answered 429 with Retry-After: 1.
	Throttle int

	customData string // the model's, as last set
	nextID     int
	instances  []*Instance
}

// Refusal is an error answer.
type Refusal struct {
	Status        int
	Code, Message string
}

// Instance is one instance of a scale set.
type Instance struct {
	ID           string
	ComputerName string
	Created      time.Time
	State        string // Creating, Succeeded, Failed, Deleting
	Power        string // running, deallocated
	Failure      string
	// CustomData is the model's custom data when the instance was made.
	CustomData string
}

type op struct {
	polls int
	until time.Time
	done  func() // what happens when it ends (nil once it did)
}

// New starts a fake; Close it when done.
func New() *Server {
	f := &Server{sets: map[string]*ScaleSet{}, ops: map[string]*op{}}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	return f
}

// Add makes a scale set in subscription sub and resource group rg.
func (f *Server) Add(sub, rg string, s *ScaleSet) *ScaleSet {
	if s.Location == "" {
		s.Location = "westeurope"
	}
	if s.SKU == "" {
		s.SKU = "Standard_D2s_v5"
	}
	if s.Upgrade == "" {
		s.Upgrade = "Manual"
	}
	if s.OpPolls == 0 {
		s.OpPolls = 1
	}
	if s.OpTime == 0 {
		s.OpTime = 200 * time.Millisecond
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets[strings.ToLower(sub+"/"+rg+"/"+s.Name)] = s
	return s
}

// Calls returns the calls answered so far.
func (f *Server) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Instances returns a copy of a scale set's instances.
func (f *Server) Instances(s *ScaleSet) []Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tick()
	var out []Instance
	for _, in := range s.instances {
		out = append(out, *in)
	}
	return out
}

// Capacity returns a scale set's capacity now.
func (f *Server) Capacity(s *ScaleSet) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return s.Capacity
}

// Evict deallocates a Spot instance, as Azure does when it takes the
// capacity back.
func (f *Server) Evict(s *ScaleSet, computerName string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, in := range s.instances {
		if in.ComputerName == computerName {
			in.Power = "deallocated"
			return true
		}
	}
	return false
}

// Release ends the provisioning of the held instances of s.
func (f *Server) Release(s *ScaleSet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s.Hold = false
	for _, in := range s.instances {
		if in.State == "Creating" {
			in.State, in.Power = "Succeeded", "running"
		}
	}
}

// Set changes a scale set under the fake's lock.
func (f *Server) Set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// Credential is a token credential the fake takes.
type Credential struct{}

// GetToken returns a token that expires in an hour.
func (Credential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "armfake-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

var (
	setPath = regexp.MustCompile(`(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Compute/virtualMachineScaleSets/([^/]+)(/virtualMachines|/delete)?$`)
	opPath  = regexp.MustCompile(`(?i)^/subscriptions/[^/]+/providers/Microsoft\.Compute/locations/[^/]+/operations/([^/]+)$`)
)

func (f *Server) serve(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(r.Body, 4<<20))
	}
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	at := time.Now()
	defer func() {
		f.mu.Lock()
		f.calls = append(f.calls, Call{At: at, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: body, Status: rec.status})
		f.mu.Unlock()
	}()
	if r.Header.Get("Authorization") != "Bearer armfake-token" {
		armError(rec, http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		armError(rec, http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tick()
	if m := opPath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodGet {
		f.operation(rec, m[1])
		return
	}
	m := setPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		armError(rec, http.StatusNotFound, "InvalidResourceType", "The resource type could not be found in the namespace 'Microsoft.Compute'.")
		return
	}
	s := f.sets[strings.ToLower(m[1]+"/"+m[2]+"/"+m[3])]
	if s == nil {
		armError(rec, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The Resource 'Microsoft.Compute/virtualMachineScaleSets/%s' under resource group '%s' was not found.", m[3], m[2]))
		return
	}
	if s.Throttle > 0 {
		s.Throttle--
		rec.Header().Set("Retry-After", "1")
		armError(rec, http.StatusTooManyRequests, "TooManyRequests", "The request is being throttled as the limit has been reached for operation type - Read_30Min.")
		return
	}
	base := "https://" + r.Host + "/subscriptions/" + m[1]
	switch {
	case m[4] == "" && r.Method == http.MethodGet:
		writeJSON(rec, http.StatusOK, f.setJSON(s, m))
	case m[4] == "" && r.Method == http.MethodPatch:
		f.update(rec, s, m, base, body)
	case strings.EqualFold(m[4], "/virtualMachines") && r.Method == http.MethodGet:
		f.list(rec, s, r)
	case strings.EqualFold(m[4], "/delete") && r.Method == http.MethodPost:
		f.deleteInstances(rec, s, base, body)
	default:
		armError(rec, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" is not allowed here")
	}
}

func (f *Server) setJSON(s *ScaleSet, m []string) map[string]any {
	mode := "Uniform"
	if s.Flexible {
		mode = "Flexible"
	}
	priority := "Regular"
	if s.Spot {
		priority = "Spot"
	}
	return map[string]any{
		"id":       fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachineScaleSets/%s", m[1], m[2], s.Name),
		"name":     s.Name,
		"type":     "Microsoft.Compute/virtualMachineScaleSets",
		"location": s.Location,
		"sku":      map[string]any{"name": s.SKU, "tier": "Standard", "capacity": s.Capacity},
		"properties": map[string]any{
			"orchestrationMode": mode,
			"upgradePolicy":     map[string]any{"mode": s.Upgrade},
			"provisioningState": "Succeeded",
			// customData is never returned.
			"virtualMachineProfile": map[string]any{"priority": priority,
				"osProfile": map[string]any{"computerNamePrefix": s.Name, "adminUsername": "azureuser"}},
		},
	}
}

func (f *Server) update(w http.ResponseWriter, s *ScaleSet, m []string, base string, body []byte) {
	if s.Refuse != nil {
		armError(w, s.Refuse.Status, s.Refuse.Code, s.Refuse.Message)
		return
	}
	var u struct {
		SKU *struct {
			Capacity *int64 `json:"capacity"`
		} `json:"sku"`
		Properties *struct {
			VirtualMachineProfile *struct {
				OSProfile *struct {
					CustomData *string `json:"customData"`
				} `json:"osProfile"`
			} `json:"virtualMachineProfile"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(body, &u); err != nil {
		armError(w, http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized: "+err.Error())
		return
	}
	if p := u.Properties; p != nil && p.VirtualMachineProfile != nil && p.VirtualMachineProfile.OSProfile != nil && p.VirtualMachineProfile.OSProfile.CustomData != nil {
		s.customData = *p.VirtualMachineProfile.OSProfile.CustomData
	}
	var made []*Instance
	if u.SKU != nil && u.SKU.Capacity != nil {
		want := *u.SKU.Capacity
		if want < 0 || want > 1000 {
			armError(w, http.StatusBadRequest, "InvalidParameter", "The value of parameter sku.capacity is invalid.")
			return
		}
		live := func() int64 {
			n := int64(0)
			for _, in := range s.instances {
				if in.State != "Deleting" {
					n++
				}
			}
			return n
		}
		for live() < want {
			in := &Instance{ID: strconv.Itoa(s.nextID), Created: time.Now().UTC(), State: "Creating", CustomData: s.customData}
			in.ComputerName = fmt.Sprintf("%s%06s", strings.ToLower(s.Name), strconv.FormatInt(int64(s.nextID), 36))
			s.nextID++
			s.instances = append(s.instances, in)
			made = append(made, in)
		}
		// Lowering the capacity removes the highest ids, whatever runs
		// there: the provider must never do it.
		for live() > want {
			for i := len(s.instances) - 1; i >= 0; i-- {
				if s.instances[i].State != "Deleting" {
					s.instances = slices.Delete(s.instances, i, i+1)
					break
				}
			}
		}
		s.Capacity = want
	}
	id := f.newOp(s, func() {
		for _, in := range made {
			switch {
			case s.FailProvisioning != "":
				in.State, in.Failure = "Failed", s.FailProvisioning
			case !s.Hold && in.State == "Creating":
				in.State, in.Power = "Succeeded", "running"
			}
		}
	})
	w.Header().Set("Azure-AsyncOperation", base+"/providers/Microsoft.Compute/locations/"+s.Location+"/operations/"+id+"?api-version=2024-11-01")
	out := f.setJSON(s, m)
	out["properties"].(map[string]any)["provisioningState"] = "Updating"
	writeJSON(w, http.StatusOK, out)
}

func (f *Server) newOp(s *ScaleSet, done func()) string {
	f.seq++
	id := fmt.Sprintf("op-%d", f.seq)
	f.ops[id] = &op{polls: s.OpPolls, until: time.Now().Add(s.OpTime), done: done}
	return id
}

// tick ends the operations whose time has come, as Azure does whether
// anyone asks or not.
func (f *Server) tick() {
	now := time.Now()
	for _, o := range f.ops {
		if o.done != nil && now.After(o.until) {
			o.done()
			o.done = nil
		}
	}
}

func (f *Server) operation(w http.ResponseWriter, id string) {
	o := f.ops[id]
	if o == nil {
		armError(w, http.StatusNotFound, "NotFound", "operation "+id+" not found")
		return
	}
	if o.polls > 0 && o.done != nil {
		o.polls--
		writeJSON(w, http.StatusOK, map[string]any{"name": id, "status": "InProgress", "startTime": time.Now().UTC()})
		return
	}
	if o.done != nil {
		o.done()
		o.done = nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": id, "status": "Succeeded", "startTime": time.Now().UTC(), "endTime": time.Now().UTC()})
}

// pageSize is how many instances a page of the list holds: small, so that
// callers must follow nextLink.
const pageSize = 2

func (f *Server) list(w http.ResponseWriter, s *ScaleSet, r *http.Request) {
	// The token is the last instance id of the page before: ids only
	// grow, so a page holds what comes after it even when instances were
	// deleted in between.
	after := -1
	if tok := r.URL.Query().Get("$skiptoken"); tok != "" {
		after, _ = strconv.Atoi(tok)
	}
	start := len(s.instances)
	for i, in := range s.instances {
		if id, _ := strconv.Atoi(in.ID); id > after {
			start = i
			break
		}
	}
	expand := r.URL.Query().Get("$expand") == "instanceView"
	var page []map[string]any
	end := min(start+pageSize, len(s.instances))
	for _, in := range s.instances[start:end] {
		props := map[string]any{
			"provisioningState":  in.State,
			"timeCreated":        in.Created,
			"latestModelApplied": true,
			"osProfile":          map[string]any{"computerName": in.ComputerName, "adminUsername": "azureuser"},
		}
		if expand {
			statuses := []map[string]any{{"code": "ProvisioningState/" + strings.ToLower(in.State), "level": "Info"}}
			if in.State == "Failed" {
				statuses[0] = map[string]any{"code": "ProvisioningState/failed/" + in.Failure, "level": "Error",
					"message": "Allocation failed. We do not have sufficient capacity for the requested VM size in this region."}
			}
			if in.Power != "" {
				statuses = append(statuses, map[string]any{"code": "PowerState/" + in.Power, "level": "Info"})
			}
			props["instanceView"] = map[string]any{"statuses": statuses}
		}
		page = append(page, map[string]any{"instanceId": in.ID, "name": s.Name + "_" + in.ID, "location": s.Location,
			"type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines", "properties": props})
	}
	out := map[string]any{"value": page}
	if end < len(s.instances) {
		q := r.URL.Query()
		q.Set("$skiptoken", s.instances[end-1].ID)
		out["nextLink"] = "https://" + r.Host + r.URL.Path + "?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *Server) deleteInstances(w http.ResponseWriter, s *ScaleSet, base string, body []byte) {
	var req struct {
		InstanceIDs []string `json:"instanceIds"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.InstanceIDs) == 0 {
		armError(w, http.StatusBadRequest, "InvalidParameter", "The value of parameter instanceIds is invalid.")
		return
	}
	var doomed []*Instance
	for _, id := range req.InstanceIDs {
		i := slices.IndexFunc(s.instances, func(in *Instance) bool { return in.ID == id })
		if i < 0 {
			armError(w, http.StatusBadRequest, "InvalidParameter", "The provided instanceId "+id+" is not an active Virtual Machine Scale Set VM instanceId.")
			return
		}
		doomed = append(doomed, s.instances[i])
	}
	for _, in := range doomed {
		in.State = "Deleting"
	}
	s.Capacity -= int64(len(doomed))
	id := f.newOp(s, func() {
		s.instances = slices.DeleteFunc(s.instances, func(in *Instance) bool { return slices.Contains(doomed, in) })
	})
	w.Header().Set("Azure-AsyncOperation", base+"/providers/Microsoft.Compute/locations/"+s.Location+"/operations/"+id+"?api-version=2024-11-01")
	w.Header().Set("Location", base+"/providers/Microsoft.Compute/locations/"+s.Location+"/operations/"+id+"?monitor=true&api-version=2024-11-01")
	w.WriteHeader(http.StatusAccepted)
}

func armError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("x-ms-error-code", code)
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// ProcessEnv writes into dir what another process needs to reach the fake
// through the Azure SDK's default credential chain, and returns its
// variables: the fake's certificate as the only root (SSL_CERT_FILE),
// Azure CLI's credential alone (AZURE_TOKEN_CREDENTIALS) and, first on
// PATH, an `az` that prints the fake's token.
func (f *Server) ProcessEnv(dir, path string) ([]string, error) {
	ca := filepath.Join(dir, "armfake.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw}), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	az := "#!/bin/sh\n# Azure CLI's `az account get-access-token`, as the fake takes it.\n" +
		"echo '{\"accessToken\": \"armfake-token\", \"expiresOn\": \"2099-01-01 00:00:00.000000\", \"expires_on\": 4070908800, \"tokenType\": \"Bearer\"}'\n"
	if err := os.WriteFile(filepath.Join(bin, "az"), []byte(az), 0o755); err != nil {
		return nil, err
	}
	return []string{"PATH=" + bin + ":" + path, "SSL_CERT_FILE=" + ca, "AZURE_TOKEN_CREDENTIALS=AzureCLICredential"}, nil
}
