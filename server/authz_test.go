package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
	"github.com/dspool/dspool/server"
	"golang.org/x/crypto/ssh"
)

// The authorization matrix: every API route, called by each kind of caller
// with a token of every scope, without the route's scope, and with only
// it, must answer exactly the status its row says. TestAuthzMatrix fails
// for a route without a row and for a row without a route, so a new route
// cannot ship without saying who may call it.
//
// To add a row, key it by the route as server.go lists it ("METHOD /path")
// and give:
//   - scope: the token scope the route needs (it must match server.go);
//   - path: the URL, with {placeholders} for objects the owner owns (see
//     authzFixture.objects); "" when the route's path has no parameter;
//   - body: the JSON body, with the same placeholders;
//   - fresh: the request uses its objects up (cancel, remove, revoke), so
//     each cell gets new ones;
//   - the status each caller gets with a token of every scope: anon (no
//     credentials), other (another user), owner (the user who owns the
//     objects), admin. A token without the route's scope gets 403 whoever
//     holds it; one with only that scope gets what one of every scope gets
//     (but an admin's token with account and not admin is another user's).
//   - maint: a team maintainer's status, when it differs from another
//     user's (teams: see makeMaintainer).
type authzRow struct {
	scope, path, body         string
	fresh                     bool
	anon, other, owner, admin int
	maint                     int // 0: the same as other
}

var authzMatrix = map[string]authzRow{
	"GET /api/v1/openapi.json": {anon: 200, other: 200, owner: 200, admin: 200},
	"GET /healthz":             {anon: 200, other: 200, owner: 200, admin: 200},
	"GET /readyz":              {anon: 200, other: 200, owner: 200, admin: 200},
	"HEAD /healthz":            {anon: 200, other: 200, owner: 200, admin: 200},
	"HEAD /readyz":             {anon: 200, other: 200, owner: 200, admin: 200},
	"GET /api/v1/whoami":       {anon: 401, other: 200, owner: 200, admin: 200},
	// SSH gateways of their own process (gateways.go): an admin's token
	// with the gateway scope.
	"GET /api/v1/gateway/config":     {scope: dspool.ScopeGateway, anon: 401, other: 403, owner: 403, admin: 200},
	"POST /api/v1/gateway/auth":      {scope: dspool.ScopeGateway, body: `{"user":"{owner}","fingerprint":"SHA256:none"}`, anon: 401, other: 403, owner: 403, admin: 200},
	"POST /api/v1/gateway/sessions":  {scope: dspool.ScopeGateway, body: `{"gateway":"g","conn":"c","user":"nobody{n}","how":"password"}`, anon: 401, other: 403, owner: 403, admin: 404},
	"POST /api/v1/gateway/channel":   {scope: dspool.ScopeGateway, body: `{"gateway":"g","conn":"c","kind":"exec"}`, anon: 401, other: 403, owner: 403, admin: 404},
	"POST /api/v1/gateway/forward":   {scope: dspool.ScopeGateway, body: `{"gateway":"g","conn":"c","host":"localhost","port":22}`, anon: 401, other: 403, owner: 403, admin: 404},
	"POST /api/v1/gateway/heartbeat": {scope: dspool.ScopeGateway, body: `{"gateway":"g","conns":[]}`, anon: 401, other: 403, owner: 403, admin: 200},
	"POST /api/v1/gateway/close":     {scope: dspool.ScopeGateway, body: `{"gateway":"g","conns":["c"]}`, anon: 401, other: 403, owner: 403, admin: 204},
	"POST /api/v1/gateway/audit":     {scope: dspool.ScopeGateway, body: `{"action":"login.ssh","actor":"authz","outcome":"failure"}`, anon: 401, other: 403, owner: 403, admin: 204},

	"POST /api/v1/jobs":              {scope: dspool.ScopeJobs, body: `{"command":["true"]}`, anon: 401, other: 201, owner: 201, admin: 201},
	"GET /api/v1/jobs":               {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"GET /api/v1/jobs/{id}":          {scope: dspool.ScopeRead, path: "/api/v1/jobs/{job}", anon: 401, other: 404, owner: 200, admin: 200},
	"POST /api/v1/jobs/{id}/cancel":  {scope: dspool.ScopeJobs, path: "/api/v1/jobs/{job}/cancel", fresh: true, anon: 401, other: 404, owner: 200, admin: 200},
	"GET /api/v1/jobs/{id}/wait":     {scope: dspool.ScopeRead, path: "/api/v1/jobs/{job}/wait?timeout=0s", anon: 401, other: 404, owner: 200, admin: 200},
	"GET /api/v1/jobs/{id}/logs":     {scope: dspool.ScopeRead, path: "/api/v1/jobs/{job}/logs", anon: 401, other: 404, owner: 200, admin: 200},
	"POST /api/v1/jobs/{id}/hold":    {scope: dspool.ScopeJobs, path: "/api/v1/jobs/{job}/hold", fresh: true, anon: 401, other: 404, owner: 200, admin: 200},
	"POST /api/v1/jobs/{id}/release": {scope: dspool.ScopeJobs, path: "/api/v1/jobs/{job}/release", fresh: true, anon: 401, other: 404, owner: 200, admin: 200},
	// The owner lowers it; a maintainer of its team sets it within the
	// team's range (none: 0 or below).
	"POST /api/v1/jobs/{id}/priority": {scope: dspool.ScopeJobs, path: "/api/v1/jobs/{teamjob}/priority", body: `{"priority":-1}`,
		anon: 401, other: 404, maint: 200, owner: 200, admin: 200},
	"GET /api/v1/pools": {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},

	// Schedules: a user's own, by name or id; an admin's way to anyone's
	// is its id ({schedule} is the owner's).
	"POST /api/v1/schedules": {scope: dspool.ScopeJobs, body: `{"name":"new{n}","cron":"@daily","job":{"command":["true"]}}`,
		anon: 401, other: 201, owner: 201, admin: 201},
	"GET /api/v1/schedules":               {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"GET /api/v1/schedules/{ref}":         {scope: dspool.ScopeRead, path: "/api/v1/schedules/{schedule}", anon: 401, other: 404, owner: 200, admin: 200},
	"POST /api/v1/schedules/{ref}/pause":  {scope: dspool.ScopeJobs, path: "/api/v1/schedules/{schedule}/pause", anon: 401, other: 404, owner: 200, admin: 200},
	"POST /api/v1/schedules/{ref}/resume": {scope: dspool.ScopeJobs, path: "/api/v1/schedules/{schedule}/resume", anon: 401, other: 404, owner: 200, admin: 200},
	"DELETE /api/v1/schedules/{ref}":      {scope: dspool.ScopeJobs, path: "/api/v1/schedules/{schedule}", fresh: true, anon: 401, other: 404, owner: 200, admin: 200},

	"POST /api/v1/pools":                    {scope: dspool.ScopeAdmin, body: `{"pools":[{"name":"authz","provider":"static","node":{"cpus":"1","memory":"1GiB"}}]}`, anon: 401, other: 403, owner: 403, admin: 200},
	"GET /api/v1/pools/{name}":              {scope: dspool.ScopeRead, path: "/api/v1/pools/{pool}", anon: 401, other: 200, owner: 200, admin: 200},
	"POST /api/v1/pools/{name}/join-tokens": {scope: dspool.ScopeAdmin, path: "/api/v1/pools/{pool}/join-tokens", anon: 401, other: 403, owner: 403, admin: 201},
	"GET /api/v1/pools/{name}/events":       {scope: dspool.ScopeRead, path: "/api/v1/pools/{pool}/events", anon: 401, other: 200, owner: 200, admin: 200},
	"DELETE /api/v1/pools/{name}":           {scope: dspool.ScopeAdmin, path: "/api/v1/pools/{emptypool}", fresh: true, anon: 401, other: 403, owner: 403, admin: 200},
	"GET /api/v1/pools/{name}/join-tokens":  {scope: dspool.ScopeAdmin, path: "/api/v1/pools/{pool}/join-tokens", anon: 401, other: 403, owner: 403, admin: 200},
	"POST /api/v1/pools/{name}/join-tokens/revoke": {scope: dspool.ScopeAdmin, path: "/api/v1/pools/{emptypool}/join-tokens/revoke", fresh: true,
		anon: 401, other: 403, owner: 403, admin: 200},
	"POST /api/v1/pools/{name}/join-tokens/{id}/revoke": {scope: dspool.ScopeAdmin, path: "/api/v1/pools/{pool}/join-tokens/{jointoken}/revoke", fresh: true,
		anon: 401, other: 403, owner: 403, admin: 200},
	"POST /api/v1/nodes/{name}/drain":   {scope: dspool.ScopeAdmin, path: "/api/v1/nodes/{node}/drain", fresh: true, anon: 401, other: 403, owner: 403, admin: 200},
	"POST /api/v1/nodes/{name}/undrain": {scope: dspool.ScopeAdmin, path: "/api/v1/nodes/{node}/undrain", fresh: true, anon: 401, other: 403, owner: 403, admin: 200},
	"DELETE /api/v1/nodes/{name}":       {scope: dspool.ScopeAdmin, path: "/api/v1/nodes/{node}", fresh: true, anon: 401, other: 403, owner: 403, admin: 200},
	"GET /api/v1/usage":                 {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"GET /api/v1/queue":                 {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"GET /api/v1/share":                 {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"GET /api/v1/nodes":                 {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},

	"GET /api/v1/users":                 {scope: dspool.ScopeAdmin, anon: 401, other: 403, owner: 403, admin: 200},
	"POST /api/v1/users":                {scope: dspool.ScopeAdmin, body: `{"name":"new{n}"}`, anon: 401, other: 403, owner: 403, admin: 201},
	"POST /api/v1/users/{name}/disable": {scope: dspool.ScopeAdmin, path: "/api/v1/users/{victim}/disable", fresh: true, anon: 401, other: 403, owner: 403, admin: 200},
	"POST /api/v1/users/{name}/enable":  {scope: dspool.ScopeAdmin, path: "/api/v1/users/{victim}/enable", fresh: true, anon: 401, other: 403, owner: 403, admin: 200},
	"PUT /api/v1/users/{name}/email":    {scope: dspool.ScopeAdmin, path: "/api/v1/users/{owner}/email", body: `{"email":"owner{n}@example.com"}`, anon: 401, other: 403, owner: 403, admin: 204},
	"PUT /api/v1/users/{name}/password": {scope: dspool.ScopeAccount, path: "/api/v1/users/{owner}/password", body: `{"password":"correct horse battery"}`, anon: 401, other: 403, owner: 204, admin: 204},
	"POST /api/v1/tokens":               {scope: dspool.ScopeAccount, body: `{}`, anon: 401, other: 201, owner: 201, admin: 201},
	"GET /api/v1/tokens":                {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"POST /api/v1/tokens/{id}/revoke":   {scope: dspool.ScopeAccount, path: "/api/v1/tokens/{token}/revoke", fresh: true, anon: 401, other: 404, owner: 200, admin: 200},
	"GET /api/v1/audit":                 {scope: dspool.ScopeAdmin, anon: 401, other: 403, owner: 403, admin: 200},
	"GET /api/v1/backup":                {scope: dspool.ScopeAdmin, anon: 401, other: 403, owner: 403, admin: 200},
	"GET /api/v1/keys":                  {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"POST /api/v1/keys":                 {scope: dspool.ScopeAccount, body: `{"key":"{pubkey}"}`, anon: 401, other: 201, owner: 201, admin: 201},
	"DELETE /api/v1/keys/{key}":         {scope: dspool.ScopeAccount, path: "/api/v1/keys/{key}", fresh: true, anon: 401, other: 404, owner: 200, admin: 200},

	// The pool has no node: a Jupyter server cannot start, for anyone
	// allowed to ask.
	"GET /api/v1/notebook":            {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"POST /api/v1/notebook":           {scope: dspool.ScopeSessions, anon: 401, other: 503, owner: 503, admin: 503},
	"DELETE /api/v1/notebook":         {scope: dspool.ScopeSessions, anon: 401, other: 200, owner: 200, admin: 200},
	"GET /api/v1/sessions":            {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"GET /api/v1/sessions/{id}":       {scope: dspool.ScopeRead, path: "/api/v1/sessions/{session}", anon: 401, other: 404, owner: 200, admin: 200},
	"POST /api/v1/sessions/{id}/kill": {scope: dspool.ScopeSessions, path: "/api/v1/sessions/{session}/kill", anon: 401, other: 404, owner: 200, admin: 200},

	// Teams: owner is a member of team authz and maint its maintainer.
	"GET /api/v1/teams":                          {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"POST /api/v1/teams":                         {scope: dspool.ScopeAdmin, body: `{"name":"team{n}"}`, anon: 401, other: 403, owner: 403, admin: 201},
	"GET /api/v1/teams/{name}":                   {scope: dspool.ScopeRead, path: "/api/v1/teams/authz", anon: 401, other: 200, owner: 200, admin: 200},
	"DELETE /api/v1/teams/{name}":                {scope: dspool.ScopeAdmin, path: "/api/v1/teams/{team}", fresh: true, anon: 401, other: 403, owner: 403, admin: 204},
	"PUT /api/v1/teams/{name}/members/{user}":    {scope: dspool.ScopeAccount, path: "/api/v1/teams/authz/members/{victim}", body: `{}`, anon: 401, other: 403, maint: 200, owner: 403, admin: 200},
	"DELETE /api/v1/teams/{name}/members/{user}": {scope: dspool.ScopeAccount, path: "/api/v1/teams/authz/members/{victim}", fresh: true, anon: 401, other: 403, maint: 200, owner: 403, admin: 200},
	"PUT /api/v1/teams/{name}/limits":            {scope: dspool.ScopeAdmin, path: "/api/v1/teams/authz/limits", body: `{"gpus":8}`, anon: 401, other: 403, owner: 403, admin: 200},
	"GET /api/v1/users/{name}/limits":            {scope: dspool.ScopeRead, path: "/api/v1/users/{owner}/limits", anon: 401, other: 403, owner: 200, admin: 200},
	"PUT /api/v1/users/{name}/limits":            {scope: dspool.ScopeAdmin, path: "/api/v1/users/{owner}/limits", body: `{"cpus":64}`, anon: 401, other: 403, owner: 403, admin: 200},

	// Secrets: a user's own, invisible to everyone else, admins included;
	// {secret} is the owner's.
	"GET /api/v1/secrets":             {scope: dspool.ScopeRead, anon: 401, other: 200, owner: 200, admin: 200},
	"PUT /api/v1/secrets/{name}":      {scope: dspool.ScopeAccount, path: "/api/v1/secrets/new{n}", body: `{"value":"dg=="}`, anon: 401, other: 201, owner: 201, admin: 201},
	"DELETE /api/v1/secrets/{name}":   {scope: dspool.ScopeAccount, path: "/api/v1/secrets/{secret}", fresh: true, anon: 401, other: 404, owner: 200, admin: 404},
	"POST /api/v1/secrets/rotate-key": {scope: dspool.ScopeAdmin, anon: 401, other: 403, owner: 403, admin: 200},

	// Agents authenticate with join tokens and node credentials: a user's
	// token, an admin's included, is neither.
	"POST /api/v1/agents/register":     {body: `{"join_token":"nope","name":"rogue"}`, anon: 401, other: 401, owner: 401, admin: 401},
	"GET /api/v1/agents/connect":       {anon: 401, other: 401, owner: 401, admin: 401},
	"POST /api/v1/agents/rotate":       {anon: 401, other: 401, owner: 401, admin: 401},
	"POST /api/v1/nodes/{name}/revoke": {scope: dspool.ScopeAdmin, path: "/api/v1/nodes/no-such-node/revoke", anon: 401, other: 403, owner: 403, admin: 404},
	"GET /api/v1/agents/data":          {anon: 401, other: 401, owner: 401, admin: 401},
}

// callers of the matrix.
var callers = []string{"anon", "other", "maint", "owner", "admin"}

func (r authzRow) want(caller string) int {
	switch caller {
	case "anon":
		return r.anon
	case "other":
		return r.other
	case "maint":
		if r.maint != 0 {
			return r.maint
		}
		return r.other
	case "owner":
		return r.owner
	}
	return r.admin
}

// authzFixture is a pool with the matrix's callers and the owner's
// objects.
type authzFixture struct {
	p      *dspooltest.Pool
	users  map[string]*dspool.User
	tokens map[string]map[string]string // caller → "all", "-SCOPE", "+SCOPE" → secret
	shared map[string]string
	n      int
}

func newAuthzFixture(t *testing.T) *authzFixture {
	p := dspooltest.New(t, dspooltest.Options{})
	ctx := context.Background()
	f := &authzFixture{p: p, users: map[string]*dspool.User{}, tokens: map[string]map[string]string{}}
	for _, c := range callers[1:] {
		u, err := p.DB.CreateUser(ctx, "authz"+c, c == "admin")
		if err != nil {
			t.Fatal(err)
		}
		f.users[c] = u
		f.tokens[c] = map[string]string{"all": f.token(t, u, dspool.Scopes)}
		for _, s := range dspool.Scopes {
			f.tokens[c]["+"+s] = f.token(t, u, []string{s})
			// admin includes account and gateway: a token without one
			// of them has no admin either.
			f.tokens[c]["-"+s] = f.token(t, u, slices.DeleteFunc(slices.Clone(dspool.Scopes), func(x string) bool {
				return x == s || (s == dspool.ScopeAccount || s == dspool.ScopeGateway) && x == dspool.ScopeAdmin
			}))
		}
	}
	makeMaintainer(t, f, f.users["maint"], f.users["owner"])
	f.shared = f.objects(t)
	return f
}

// makeMaintainer makes maint a maintainer of team authz, which owner is
// in. The rows of routes where a maintainer may do more than another user
// say so with maint.
func makeMaintainer(t *testing.T, f *authzFixture, maint, owner *dspool.User) {
	t.Helper()
	ctx := context.Background()
	if _, err := f.p.DB.CreateTeam(ctx, "authz"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*dspool.User{owner, maint} {
		if _, err := f.p.DB.AddTeamMember(ctx, "authz", u.Name, u == maint); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *authzFixture) token(t *testing.T, u *dspool.User, scopes []string) string {
	t.Helper()
	secret := server.NewSecret("dsp_")
	if _, err := f.p.DB.AddToken(context.Background(), u.ID, server.HashSecret(secret), "authz", scopes, nil); err != nil {
		t.Fatal(err)
	}
	return secret
}

// objects makes a new set of the owner's objects and returns the values of
// the placeholders: {job} (queued), {teamjob} (queued, for team authz), {session}, {key}, {token}, {victim} (a
// user to disable, in team authz), {owner}, {pool}, {pubkey} (a key nobody
// has), {team} (a team nobody is in), {node} (a ready node of no agent),
// {schedule} (the owner's schedule, by id),
// {emptypool} (a pool without nodes or work), {jointoken} (of {pool}), {n}.
func (f *authzFixture) objects(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	f.n++
	owner := f.users["owner"]
	spec := &dspool.JobSpec{Command: []string{"true"}}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	j, _, err := f.p.DB.SubmitJob(ctx, owner.ID, spec)
	if err != nil {
		t.Fatal(err)
	}
	teamSpec := *spec
	teamSpec.Team = "authz"
	tj, _, err := f.p.DB.SubmitJob(ctx, owner.ID, &teamSpec)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	now := time.Now().UTC()
	sess := &dspool.Session{ID: "s-" + hex.EncodeToString(b), User: owner.Name, Kind: dspool.SessionSSH, Pool: dspool.DefaultPool,
		Node: "n-authz", CPUs: 1000, Memory: 1 << 30, State: dspool.SessionActive, StartedAt: now, LastActivity: now}
	if err := f.p.DB.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	k, err := server.ParseKey(newPublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	k.User = owner.Name
	if k, err = f.p.DB.AddKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	tok, err := f.p.DB.AddToken(ctx, owner.ID, server.HashSecret(server.NewSecret("dsp_")), "owned", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	victim, err := f.p.DB.CreateUser(ctx, fmt.Sprintf("victim%d", f.n), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.DB.AddTeamMember(ctx, "authz", victim.Name, false); err != nil {
		t.Fatal(err)
	}
	team, err := f.p.DB.CreateTeam(ctx, fmt.Sprintf("gone%d", f.n))
	if err != nil {
		t.Fatal(err)
	}
	sec, err := (&api.Client{Server: f.p.URL, Token: f.tokens["owner"]["all"]}).SetSecret(ctx, fmt.Sprintf("s%d", f.n), api.SecretSet{Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	node := &dspool.Node{ID: fmt.Sprintf("n-authz%d", f.n), Name: fmt.Sprintf("authz-%d", f.n), Pool: dspool.DefaultPool,
		State: dspool.NodeReady, CreatedAt: time.Now()}
	if err := f.p.DB.CreateNode(ctx, node, server.HashSecret(server.NewSecret("dspn_"))); err != nil {
		t.Fatal(err)
	}
	empty := &dspool.Pool{Name: fmt.Sprintf("empty%d", f.n), Provider: dspool.Provider(dspool.ProviderStatic), Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}}
	if err := empty.Normalize(""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.DB.PutPool(ctx, empty); err != nil {
		t.Fatal(err)
	}
	jt, err := f.p.DB.AddJoinToken(ctx, dspool.DefaultPool, server.HashSecret(server.NewSecret("dspj_")), "authz", nil)
	if err != nil {
		t.Fatal(err)
	}
	sched := &dspool.ScheduleSpec{Name: fmt.Sprintf("sched%d", f.n), Cron: "@daily", Job: dspool.JobSpec{Command: []string{"true"}}}
	if err := sched.Normalize(); err != nil {
		t.Fatal(err)
	}
	sc, err := f.p.DB.CreateSchedule(ctx, owner.ID, sched, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"{schedule}": fmt.Sprint(sc.ID), "{node}": node.Name, "{emptypool}": empty.Name, "{jointoken}": fmt.Sprint(jt.ID),
		"{team}": team.Name, "{secret}": sec.Name, "{job}": fmt.Sprint(j.ID), "{teamjob}": fmt.Sprint(tj.ID), "{session}": sess.ID, "{key}": k.Fingerprint, "{token}": fmt.Sprint(tok.ID),
		"{victim}": victim.Name, "{owner}": owner.Name, "{pool}": dspool.DefaultPool, "{pubkey}": strings.TrimSpace(newPublicKey(t)),
		"{n}": fmt.Sprint(f.n)}
}

func newPublicKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(sp))
}

// call makes one request of a cell and returns its status and body.
func (f *authzFixture) call(t *testing.T, route string, row authzRow, secret string, vars map[string]string) (int, string) {
	t.Helper()
	method, path, _ := strings.Cut(route, " ")
	if row.path != "" {
		path = row.path
	}
	body := row.body
	for k, v := range vars {
		path = strings.ReplaceAll(path, k, url.PathEscape(v))
		body = strings.ReplaceAll(body, k, v)
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.p.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

func TestAuthzMatrix(t *testing.T) {
	f := newAuthzFixture(t)
	infos := f.p.Server.RouteInfos()
	routes := map[string]server.RouteInfo{}
	for _, ri := range infos {
		routes[ri.Route] = ri
		row, ok := authzMatrix[ri.Route]
		if !ok {
			t.Errorf("route %s has no row in the authorization matrix (server/authz_test.go): say who may call it", ri.Route)
			continue
		}
		if row.scope != ri.Scope {
			t.Errorf("%s: the matrix says scope %q, the route needs %q", ri.Route, row.scope, ri.Scope)
		}
	}
	var stale []string
	for route := range authzMatrix {
		if _, ok := routes[route]; !ok {
			stale = append(stale, route)
		}
	}
	sort.Strings(stale)
	for _, route := range stale {
		t.Errorf("the authorization matrix has a row for %s, which is no route: remove it", route)
	}

	sorted := make([]string, 0, len(routes))
	for r := range routes {
		sorted = append(sorted, r)
	}
	sort.Strings(sorted)
	for _, route := range sorted {
		row, ok := authzMatrix[route]
		if !ok {
			continue
		}
		t.Run(strings.ReplaceAll(route, "/", "_"), func(t *testing.T) {
			cell := func(caller, token string, want, full int) {
				t.Helper()
				vars := f.shared
				if row.fresh {
					vars = f.objects(t)
				}
				vars["{n}"] = fmt.Sprint(f.n)
				vars["{pubkey}"] = strings.TrimSpace(newPublicKey(t))
				f.n++
				secret := ""
				if caller != "anon" {
					secret = f.tokens[caller][token]
				}
				got, body := f.call(t, route, row, secret, vars)
				if row.fresh {
					// A fresh set's key goes with its cell: a user may
					// hold only so many.
					_, _ = f.p.DB.RemoveKey(context.Background(), "", vars["{key}"])
					id, _ := strconv.ParseInt(vars["{schedule}"], 10, 64)
					_ = f.p.DB.DeleteSchedule(context.Background(), id)
				}
				if got != want {
					t.Errorf("%s with token %s: got %d, want %d: %s", caller, token, got, want, body)
				}
				if strings.HasPrefix(token, "-") && full != http.StatusForbidden && !strings.Contains(body, "lacks the "+row.scope+" scope") {
					t.Errorf("%s with token %s: the refusal does not name the scope: %s", caller, token, body)
				}
			}
			cell("anon", "", row.anon, row.anon)
			for _, c := range callers[1:] {
				cell(c, "all", row.want(c), row.want(c))
				if row.scope == "" || row.want(c) == http.StatusUnauthorized {
					continue
				}
				cell(c, "-"+row.scope, http.StatusForbidden, row.want(c))
				if c == "admin" && row.scope == dspool.ScopeAccount {
					// An admin's token with account but not admin
					// manages the account alone, as another user's does.
					cell(c, "+"+row.scope, row.other, row.other)
					continue
				}
				cell(c, "+"+row.scope, row.want(c), row.want(c))
			}
		})
	}
}
