package agent

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// HostAccounts returns the accounts and groups in the local files of etc
// (passwd, group: those useradd and groupadd write; "" means /etc) whose
// ids lie in r, sorted.
func HostAccounts(etc string, r dspool.UIDRange) ([]dspool.HostAccount, error) {
	var out []dspool.HostAccount
	for _, f := range []struct {
		name  string
		group bool
	}{{"passwd", false}, {"group", true}} {
		b, err := os.ReadFile(filepath.Join(cmp.Or(etc, "/etc"), f.name))
		if err != nil {
			return nil, fmt.Errorf("read the machine's accounts: %w", err)
		}
		out = append(out, ParseIDFile(string(b), f.group, r)...)
	}
	dspool.SortAccounts(out)
	return out, nil
}

// ParseIDFile returns the entries of an /etc/passwd (or, with group, an
// /etc/group) file whose ids lie in r; lines it cannot read are skipped.
func ParseIDFile(text string, group bool, r dspool.UIDRange) []dspool.HostAccount {
	var out []dspool.HostAccount
	for _, line := range strings.Split(text, "\n") {
		f := strings.SplitN(line, ":", 4)
		if len(f) < 3 || f[0] == "" || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], "+") {
			continue
		}
		id, err := strconv.Atoi(f[2])
		if err != nil || !r.Contains(id) {
			continue
		}
		out = append(out, dspool.HostAccount{Name: f[0], ID: id, Group: group})
	}
	return out
}

// accountFilesStamp changes when the account files in etc do.
func accountFilesStamp(etc string) string {
	var b strings.Builder
	for _, p := range []string{"passwd", "group"} {
		if st, err := os.Stat(filepath.Join(cmp.Or(etc, "/etc"), p)); err == nil {
			fmt.Fprintf(&b, "%d/%d;", st.Size(), st.ModTime().UnixNano())
		}
	}
	return b.String()
}

// accountReporter sends the machine's accounts in the server's uid range
// when the server asks for a range, and again when the account files
// change: reading them on every heartbeat would cost for nothing.
type accountReporter struct {
	etc   string // Config.EtcDir
	mu    sync.Mutex
	want  dspool.UIDRange // zero until the server asks
	sent  dspool.UIDRange
	stamp string // of the files last sent
}

// report returns the report to send with the next heartbeat, or nil, and
// the files' stamp to record once the server has it.
func (r *accountReporter) report() (*api.AccountReport, string) {
	r.mu.Lock()
	want, sent, last := r.want, r.sent, r.stamp
	r.mu.Unlock()
	if want.To == 0 {
		return nil, ""
	}
	stamp := accountFilesStamp(r.etc)
	if want == sent && stamp == last {
		return nil, ""
	}
	accts, err := HostAccounts(r.etc, want)
	if err != nil {
		return nil, ""
	}
	if len(accts) > dspool.MaxHostAccounts {
		accts = accts[:dspool.MaxHostAccounts]
	}
	return &api.AccountReport{Range: want, Accounts: accts}, stamp
}

// delivered records that the server has rep.
func (r *accountReporter) delivered(rep *api.AccountReport, stamp string) {
	r.mu.Lock()
	r.sent, r.stamp = rep.Range, stamp
	r.mu.Unlock()
}

// ask records the range the server wants; it reports whether that is new.
func (r *accountReporter) ask(want dspool.UIDRange) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if want == r.want {
		return false
	}
	r.want = want
	return want != r.sent
}
