package azurevmss

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// cloudInit is the custom data of the instances of one growth: a
// cloud-config that mounts the share (where the pool says how), writes
// the joins' tokens to a file of root's (mode 0600) and runs the agent as
// a systemd service named after the machine. The tokens are never on a
// command line: the service reads them from its environment file, and
// the agent joins with the first one not spent yet, so each token joins
// one node once. Custom data is not returned by Azure's API; on the
// machine it is root's alone.
func cloudInit(pool *dspool.Pool, s *Settings, joins []autoscale.Join) string {
	tokens := make([]string, len(joins))
	for i, j := range joins {
		tokens[i] = j.Token
	}
	server := ""
	if len(joins) > 0 {
		server = joins[0].Server
	}
	args := []string{s.Dspool, "agent", "--server", server, "--pool", pool.Name, "--name", "%H",
		"--share", s.Share, "--state", s.State,
		"--cpus", strconv.FormatInt(int64(pool.Node.CPUs/1000), 10), "--memory", strconv.FormatInt(int64(pool.Node.Memory), 10)}
	if pool.Node.GPUs > 0 {
		args = append(args, "--gpus", strconv.Itoa(pool.Node.GPUs))
	}
	unit := "[Unit]\nDescription=dspool agent of pool " + pool.Name + "\n" +
		"Wants=network-online.target\nAfter=network-online.target remote-fs.target\n"
	if s.Mount != nil {
		unit += "RequiresMountsFor=" + s.Share + "\n"
	}
	unit += "[Service]\nEnvironmentFile=/etc/dspool/join.env\nExecStart=" + strings.Join(args, " ") + "\n" +
		"Restart=on-failure\nRestartSec=5\n[Install]\nWantedBy=multi-user.target\n"

	var b strings.Builder
	b.WriteString("#cloud-config\n")
	fmt.Fprintf(&b, "# dspool: nodes of pool %s\n", pool.Name)
	b.WriteString("write_files:\n")
	file := func(path, perm, content string) {
		fmt.Fprintf(&b, "  - path: %s\n    owner: root:root\n    permissions: %s\n    content: %s\n", path, q(perm), q(content))
	}
	file("/etc/dspool/join.env", "0600", "DSPOOL_JOIN_TOKEN="+strings.Join(tokens, ",")+"\n")
	file("/etc/systemd/system/dspool-agent.service", "0644", unit)
	if m := s.Mount; m != nil {
		opts := m.Options
		if opts == "" {
			opts = "defaults"
		}
		fmt.Fprintf(&b, "mounts:\n  - [%s, %s, %s, %s, \"0\", \"0\"]\n", q(m.Source), q(s.Share), q(m.Type), q(opts+",_netdev"))
	}
	b.WriteString("runcmd:\n")
	fmt.Fprintf(&b, "  - [mkdir, -p, %s]\n", q(s.Share))
	if s.Mount != nil {
		fmt.Fprintf(&b, "  - [sh, -c, %s]\n", q("mountpoint -q "+s.Share+" || mount "+s.Share))
	}
	b.WriteString("  - [systemctl, daemon-reload]\n  - [systemctl, enable, --now, dspool-agent.service]\n")
	return b.String()
}

// q quotes s as a YAML scalar (a JSON string is one).
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
