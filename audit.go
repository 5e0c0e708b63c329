package dspool

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// AuditEntry is one security-relevant action in the audit log, which is
// append-only: entries are never changed or removed.
type AuditEntry struct {
	ID int64     `json:"id"`
	At time.Time `json:"at"`
	// Actor is who acted: a user's name, AuditAnonymous before
	// authentication, or AuditSystem for the control plane itself.
	Actor  string `json:"actor"`
	Action string `json:"action"`
	// Target is what the action was on, as "KIND NAME": "user ada",
	// "token 12", "key SHA256:...", "pool gpu", "session s-1f2e".
	Target string `json:"target,omitempty"`
	// Remote is the address the request or connection came from: HOST:PORT,
	// or through a trusted proxy the client's address alone.
	Remote  string `json:"remote,omitempty"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
}

// Actors that are not users.
const (
	AuditAnonymous = "anonymous"
	AuditSystem    = "system"
)

// Outcomes of an audited action.
const (
	AuditSuccess = "success"
	AuditFailure = "failure"
)

// Audited actions. An action names a family first ("login.ssh" is a
// login), so a filter by "login" finds every kind.
const (
	AuditLoginSSH        = "login.ssh"
	AuditLoginWeb        = "login.web"
	AuditLoginOIDC       = "login.oidc"
	AuditTokenCreate     = "token.create"
	AuditTokenRevoke     = "token.revoke"
	AuditKeyAdd          = "key.add"
	AuditKeyRemove       = "key.remove"
	AuditPasswordSet     = "password.set"
	AuditUserCreate      = "user.create"
	AuditUserDisable     = "user.disable"
	AuditUserEnable      = "user.enable"
	AuditPoolApply       = "pool.apply"
	AuditJoinTokenCreate = "join_token.create"
	AuditJoinTokenRevoke = "join_token.revoke"
	AuditNodeConnect     = "node.connect"
	AuditNodeRevoke      = "node.revoke"
	AuditNodeDrain       = "node.drain"
	AuditNodeUndrain     = "node.undrain"
	AuditNodeRemove      = "node.remove"
	AuditPoolDelete      = "pool.delete"
	AuditSessionKill     = "session.kill"
	AuditGatewayConfig   = "gateway.config"
	AuditSecretRead      = "secret.read"
	AuditSecretWrite     = "secret.write"
	AuditSecretDelete    = "secret.delete"
	AuditSecretRotateKey = "secret.rotate_key"
	// AuditStoreBackup is a copy of the store taken through the API.
	AuditStoreBackup = "store.backup"
	// AuditAuditPrune is entries older than the audit retention pruned
	// (and exported first, when configured), by the control plane.
	AuditAuditPrune = "audit.prune"
)

// AuditActions lists every audited action, by family.
var AuditActions = []string{
	AuditAuditPrune,
	AuditGatewayConfig,
	AuditJoinTokenCreate, AuditJoinTokenRevoke,
	AuditJobPriority,
	AuditKeyAdd, AuditKeyRemove,
	AuditLoginOIDC, AuditLoginSSH, AuditLoginWeb,
	AuditNodeConnect, AuditNodeDrain, AuditNodeRemove, AuditNodeRevoke, AuditNodeUndrain,
	AuditPasswordSet,
	AuditPoolApply, AuditPoolDelete,
	AuditSecretDelete, AuditSecretRead, AuditSecretRotateKey, AuditSecretWrite,
	AuditSessionKill,
	AuditStoreBackup,
	AuditTeamCreate, AuditTeamDelete, AuditTeamLimits, AuditTeamMemberAdd, AuditTeamMemberRemove,
	AuditTokenCreate, AuditTokenRevoke,
	AuditUserCreate, AuditUserDisable, AuditUserEnable, AuditUserLimits,
}

// CheckAuditAction returns an EInvalid error naming field unless s is an
// audited action ("login.ssh") or a family of them ("login"); the error
// lists them.
func CheckAuditAction(field, s string) error {
	var families []string
	for _, a := range AuditActions {
		family, _, _ := strings.Cut(a, ".")
		if s == a || s == family {
			return nil
		}
		if !slices.Contains(families, family) {
			families = append(families, family)
		}
	}
	return Invalid(field, "%s is not an audited action: give a family (%s) or an action (%s)",
		quote(s), strings.Join(families, ", "), strings.Join(AuditActions, ", "))
}

// ParseScopes reads a comma-separated list of token scopes ("read,jobs"),
// in any order, into the order of Scopes; "all" is every scope. The error
// names field.
func ParseScopes(field, s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return slices.Clone(Scopes), nil
	}
	seen := map[string]bool{}
	for _, x := range strings.Split(s, ",") {
		x = strings.TrimSpace(x)
		if x == "" {
			continue
		}
		if !slices.Contains(Scopes, x) {
			return nil, Invalid(field, "%s is not a token scope: use some of %s (or all)", quote(x), strings.Join(Scopes, ", "))
		}
		seen[x] = true
	}
	if len(seen) == 0 {
		return nil, Invalid(field, "names no scope: give some of %s (or all)", strings.Join(Scopes, ", "))
	}
	var out []string
	for _, x := range Scopes {
		if seen[x] {
			out = append(out, x)
		}
	}
	return out, nil
}

// CheckScopes returns an error naming field unless scopes is a non-empty
// list of known scopes without repeats.
func CheckScopes(field string, scopes []string) error {
	if len(scopes) == 0 {
		return Invalid(field, "is empty: give some of %s", strings.Join(Scopes, ", "))
	}
	for i, x := range scopes {
		if !slices.Contains(Scopes, x) {
			return Invalid(fmt.Sprintf("%s[%d]", field, i), "%s is not a token scope: use some of %s", quote(x), strings.Join(Scopes, ", "))
		}
		if slices.Contains(scopes[:i], x) {
			return Invalid(fmt.Sprintf("%s[%d]", field, i), "%s appears twice", x)
		}
	}
	return nil
}
