package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/poolfile"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func (a *App) poolCmd() *cobra.Command {
	c := &cobra.Command{Use: "pool", Short: "Define pools and let nodes join them",
		Example: "  dspool pool apply -f pools.yaml\n  dspool pool list\n  dspool pool join-token default"}
	c.AddCommand(a.poolApplyCmd(), a.poolListCmd(), a.poolShowCmd(), a.poolJoinTokenCmd(), a.poolEventsCmd(), a.poolDeleteCmd())
	return c
}

func (a *App) poolApplyCmd() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use: "apply -f FILE", Short: "Create or update pools from a YAML file", Args: args(0, 1, "one pool file", "dspool pool apply -f pools.yaml"),
		Long: `Create or update pools from a YAML file: either one pool, or a list under
"pools:". All pools are checked before any is changed.

  pools:
    - name: gpu
      provider: local          # local (agent processes here) or static (machines that join),
                               # or a block: {name: slurm, partition: debug, time: 1d}
      node: {cpus: 8, memory: 32GiB, gpus: 1}
      count: 2
      work: [batch, interactive]
      setup: |                 # runs once as root when a node starts
        apt-get install -y python3-numpy
      labels: {zone: lab}`,
		Example: `  echo '{name: highmem, node: {cpus: 1, memory: 4GiB}, count: 1}' > pools.yaml
  dspool pool apply -f pools.yaml
  sed 's/count: 1/count: 2/' pools.yaml | dspool pool apply -f -`,
		RunE: func(cmd *cobra.Command, argv []string) error {
			if file == "" && len(argv) == 1 {
				file = argv[0]
			}
			if file == "" {
				return dspool.Invalid("-f", "give the pool file with -f FILE (or -f - for stdin)")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(io.LimitReader(a.Stdin, poolfile.MaxSize+1))
			} else {
				data, err = readLimited(file, poolfile.MaxSize+1)
			}
			if err != nil {
				return err
			}
			pools, err := poolfile.Parse(data)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			saved, err := cl.ApplyPools(cmd.Context(), pools)
			if err != nil {
				return err
			}
			nodes := map[string][]*dspool.Node{}
			if all, err := cl.Nodes(cmd.Context(), ""); err == nil {
				for _, n := range all {
					nodes[n.Pool] = append(nodes[n.Pool], n)
				}
			}
			return a.printPools(saved, nodes)
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "pool file (YAML), - for stdin")
	return c
}

func readLimited(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

func (a *App) printPools(pools []*dspool.Pool, nodes map[string][]*dspool.Node) error {
	return a.print(pools, []string{"NAME", "PROVIDER", "NODE SIZE", "READY/SIZE", "WORK", "TEAMS", "LABELS"}, func(add func(...any)) {
		for _, p := range pools {
			ready := 0
			for _, n := range nodes[p.Name] {
				if n.State == dspool.NodeReady {
					ready++
				}
			}
			size := fmt.Sprintf("%s cpu, %s", p.Node.CPUs, p.Node.Memory)
			if p.Node.GPUs > 0 {
				size += fmt.Sprintf(", %d gpu", p.Node.GPUs)
			}
			work := make([]string, len(p.Work))
			for i, w := range p.Work {
				work[i] = string(w)
			}
			var labels []string
			for k, v := range p.Labels {
				labels = append(labels, k+"="+v)
			}
			want := strconv.Itoa(p.Count)
			if a := p.Autoscale; a != nil {
				want = fmt.Sprintf("%d-%d", a.Min, a.Max) // autoscaled between min and max
			}
			readyCol := fmt.Sprintf("%d/%s", ready, want)
			if nodes == nil {
				readyCol = "-/" + want
			}
			teams := "everyone"
			if len(p.Teams) > 0 {
				teams = strings.Join(p.Teams, ",")
			}
			add(p.Name, p.Provider.Name, size, readyCol, strings.Join(work, ","), teams, dash(strings.Join(labels, ",")))
		}
	})
}

func (a *App) poolListCmd() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List pools", Args: cobra.NoArgs,
		Example: "  dspool pool list\n  dspool pool list -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ds, err := cl.Pools(cmd.Context())
			if err != nil {
				return err
			}
			if ok, _ := a.json(); ok {
				return a.print(ds, nil, nil)
			}
			pools := make([]*dspool.Pool, len(ds))
			nodes := map[string][]*dspool.Node{}
			for i, d := range ds {
				pools[i] = d.Pool
				nodes[d.Name] = d.Nodes
			}
			return a.printPools(pools, nodes)
		},
	}
}

func (a *App) poolShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show NAME", Short: "Show a pool and its nodes", Args: args(1, 1, "one pool name", "dspool pool show default"),
		Example: "  dspool pool show default",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			d, err := cl.Pool(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if ok, _ := a.json(); ok {
				return a.print(d, nil, nil)
			}
			if err := a.printPools([]*dspool.Pool{d.Pool}, map[string][]*dspool.Node{d.Name: d.Nodes}); err != nil {
				return err
			}
			if len(d.Teams) > 0 {
				fmt.Fprintf(a.Stdout, "\nFor the members of teams %s (and admins); see them with `dspool team show TEAM`.\n", strings.Join(d.Teams, ", "))
			}
			if d.Setup != "" {
				fmt.Fprintf(a.Stdout, "\nSetup script:\n%s\n", sanitize(d.Setup))
			}
			if as := d.Autoscale; as != nil {
				a.printAutoscale(as)
			}
			if d.Takes(dspool.WorkInteractive) {
				set := d.SessionSettings()
				fmt.Fprintf(a.Stdout, "\nSessions: %s, %s memory each", dspool.Plural(set.CPUs, "cpu"), set.Memory)
				if set.Idle > 0 {
					fmt.Fprintf(a.Stdout, "; ended after %s idle", time.Duration(set.Idle))
				}
				fmt.Fprintln(a.Stdout)
				for _, z := range set.Profiles {
					fmt.Fprintf(a.Stdout, "  profile %-10s %s\n", z.Name, sanitize(z.String()))
				}
			}
			fmt.Fprintln(a.Stdout, "\nNodes:")
			return a.printNodes(d.Nodes)
		},
	}
}

func (a *App) poolJoinTokenCmd() *cobra.Command {
	var o joinTokenOptions
	c := &cobra.Command{
		Use: "join-token NAME [--ttl SPAN | --list | --revoke TOKEN-ID | --revoke --all]", Short: "Print a new join token for a pool, list or revoke them (admin)",
		Long: `Print a new join token: an agent started with it joins the pool. The server
keeps only its hash. A token joins nodes until it expires (--ttl, default 24h;
--ttl 0: never) or is revoked; the nodes that joined with it keep working
either way. --list shows a pool's tokens (never their secrets).`,
		Args: args(1, 2, "one pool name (and, with --revoke, a token id)", "dspool pool join-token default"),
		Example: `  dspool pool join-token default
  dspool pool join-token default --ttl 1h
  dspool agent --server http://HOST:8080 --join-token $(dspool pool join-token default) --share /mnt/dspool
  dspool pool join-token default --list
  dspool pool join-token default --revoke 3
  dspool pool join-token default --revoke --all`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ttlGiven = cmd.Flags().Changed("ttl")
			if len(args) == 2 {
				if !o.revoke {
					return dspool.Invalid("TOKEN-ID", "a token id goes with --revoke: dspool pool join-token %s --revoke %s", args[0], args[1])
				}
				o.revokeTarget = args[1]
			}
			return a.joinTokens(cmd.Context(), args[0], o)
		},
	}
	c.Flags().StringVar(&o.ttl, "ttl", "24h", "how long the new token joins nodes, e.g. 1h or 7d; 0: it does not expire")
	c.Flags().BoolVar(&o.list, "list", false, "list the pool's join tokens: ids, times, never secrets")
	c.Flags().BoolVar(&o.revoke, "revoke", false, "revoke the join token TOKEN-ID (see --list), or with --all every one of the pool's")
	c.Flags().BoolVar(&o.all, "all", false, "with --revoke: every join token of the pool")
	return c
}

func (a *App) nodeCmd() *cobra.Command {
	c := &cobra.Command{Use: "node", Short: "See the nodes of the pools; drain and remove them (admin)",
		Example: "  dspool node list --pool highmem\n  dspool node drain highmem-1\n  dspool node remove highmem-1"}
	var pool string
	list := &cobra.Command{
		Use: "list", Short: "List nodes", Args: cobra.NoArgs,
		Example: "  dspool node list\n  dspool node list --pool highmem -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			nodes, err := cl.Nodes(cmd.Context(), pool)
			if err != nil {
				return err
			}
			if len(nodes) == 0 {
				if ok, _ := a.json(); !ok {
					fmt.Fprintln(a.Stderr, "(no nodes: a pool that autoscales adds them when work waits, local pools start theirs within seconds, and machines join with `dspool agent`, see `dspool pool join-token`)")
				}
			}
			return a.printNodes(nodes)
		},
	}
	list.Flags().StringVar(&pool, "pool", "", "only nodes of this pool")
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a node, with its full message (e.g. a failed setup script's output)",
		Args: args(1, 1, "one node name or id", "dspool node show default-1"), Example: "  dspool node show default-1",
		RunE: func(cmd *cobra.Command, argv []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			nodes, err := cl.Nodes(cmd.Context(), "")
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if n.Name == argv[0] || n.ID == argv[0] {
					if ok, _ := a.json(); ok {
						return a.print(n, nil, nil)
					}
					if err := a.printNodes([]*dspool.Node{n}); err != nil {
						return err
					}
					if n.Message != "" {
						fmt.Fprintf(a.Stdout, "\nMessage:\n%s\n", sanitize(n.Message))
					}
					switch {
					case n.Inventory.Podman != "":
						fmt.Fprintf(a.Stdout, "\nImages: podman %s\n", sanitize(n.Inventory.Podman))
					case n.Inventory.ImagesWhy != "":
						fmt.Fprintf(a.Stdout, "\nImages: none (%s)\n", sanitize(n.Inventory.ImagesWhy))
					}
					if len(n.Inventory.GPUs) > 0 {
						fmt.Fprintln(a.Stdout, "\nGPUs:")
						for _, g := range n.Inventory.GPUs {
							state := "free"
							if slices.Contains(n.Allocated.GPUs, g.Index) {
								state = "held"
							}
							if slices.Contains(n.Usage.GPUsBusy, g.Index) {
								state += ", at work"
							}
							fmt.Fprintf(a.Stdout, "  %-4d %s (%s)\n", g.Index, sanitize(gpuLine(g)), state)
						}
					}
					if len(n.Accounts) > 0 {
						fmt.Fprintf(a.Stdout, "\nAccounts in dspool's uid range that are not its users' (new users do not get their ids; users whose uid or gid they hold get no work here):\n")
						for _, acct := range n.Accounts {
							fmt.Fprintf(a.Stdout, "  %s\n", sanitize(acct.String()))
						}
					}
					return nil
				}
			}
			return dspool.Errorf(dspool.ENotFound, "no node %q: list them with `dspool node list`", argv[0])
		},
	}
	c.AddCommand(list, show, a.nodeDrainCmd(), a.nodeUndrainCmd(), a.nodeRemoveCmd(), a.nodeRevokeCmd())
	return c
}

func (a *App) printNodes(nodes []*dspool.Node) error {
	return a.print(nodes, []string{"ID", "NAME", "POOL", "STATE", "CPUS", "MEMORY", "GPUS", "ATTEMPTS", "LOAD", "SHARE FREE", "LAST SEEN", "MESSAGE"}, func(add func(...any)) {
		for _, n := range nodes {
			seen := "-"
			if n.LastSeen != nil {
				seen = age(*n.LastSeen) + " ago"
			}
			share, message := "-", n.Message
			if n.Usage.ShareSize > 0 {
				share = n.Usage.ShareFree.String()
			}
			if full := n.Usage.ShareFull(); full != "" {
				share += " (full)"
				if message == "" {
					message = full + "; the node takes no new work until then"
				}
			}
			if message == "" && len(n.Accounts) > 0 {
				message = fmt.Sprintf("%s here hold ids of dspool's uid range: %s", dspool.Plural(len(n.Accounts), "account"), dspool.ListAccounts(n.Accounts))
			}
			add(n.ID, n.Name, n.Pool, n.State,
				fmt.Sprintf("%s/%s", n.Allocated.CPUs, n.Inventory.CPUs),
				fmt.Sprintf("%s/%s", n.Allocated.Memory, n.Inventory.Memory),
				fmt.Sprintf("%d/%d", len(n.Allocated.GPUs), len(n.Inventory.GPUs)),
				n.Usage.Attempts, fmt.Sprintf("%.2f", n.Usage.Load1), share, seen, dash(firstLine(message)))
		}
	})
}

func (a *App) userCmd() *cobra.Command {
	c := &cobra.Command{Use: "user", Short: "Manage users (admin), your password and your limits", Example: "  dspool user create alice\n  dspool user list\n  dspool user passwd\n  dspool user limits"}
	var admin bool
	var email string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a user with the next free uid/gid (admin)", Args: args(1, 1, "the new user's name", "dspool user create alice"),
		Example: "  dspool user create alice\n  dspool user create bob --email bob@example.com\n  dspool token create --user alice",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			n, err := cl.NewUser(cmd.Context(), api.UserCreate{Name: args[0], Admin: admin, Email: email})
			if err != nil {
				return err
			}
			for _, w := range n.Warnings {
				fmt.Fprintf(a.Stderr, "warning: %s\n", sanitize(w))
			}
			return a.printUsersAs(&n.User, []*dspool.User{&n.User})
		},
	}
	create.Flags().BoolVar(&admin, "admin", false, "make the user an admin")
	create.Flags().StringVar(&email, "email", "", "the user's email, which single sign-on maps to them (verified by the identity provider)")
	list := &cobra.Command{
		Use: "list", Short: "List users (admin)", Args: cobra.NoArgs, Example: "  dspool user list\n  dspool user list -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			us, err := cl.Users(cmd.Context())
			if err != nil {
				return err
			}
			return a.printUsers(us)
		},
	}
	var remove bool
	passwd := &cobra.Command{
		Use: "passwd [USER]", Short: "Set your password (or, as an admin, another user's)",
		Long: `Set a password, stored as an argon2id hash. The web login (the pool's page,
and your Jupyter server behind it) takes it. SSH logins take it only when the
server allows passwords (dspool up --ssh-password-auth, or ssh_password_auth:
true); by default they take keys only (dspool key add). On a terminal it asks
twice without echo; otherwise it reads the first line of standard input. At
least 8 characters.`,
		Args: args(0, 1, "at most one user name", "dspool user passwd alice"),
		Example: `  dspool user passwd
  dspool user passwd alice
  head -c 12 /dev/urandom | base64 | tee alice.pw | dspool user passwd alice
  dspool user passwd --remove alice`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			} else {
				me, err := cl.Whoami(cmd.Context())
				if err != nil {
					return err
				}
				name = me.Name
			}
			pw := ""
			if !remove {
				if pw, err = a.readPassword(name); err != nil {
					return err
				}
			}
			if err := cl.SetPassword(cmd.Context(), name, pw); err != nil {
				return err
			}
			if remove {
				fmt.Fprintf(a.Stderr, "password of %s removed\n", name)
			} else {
				fmt.Fprintf(a.Stderr, "password of %s set\n", name)
			}
			return nil
		},
	}
	passwd.Flags().BoolVar(&remove, "remove", false, "remove the password: key and token logins only")
	c.AddCommand(a.userDisableCmd(true), a.userDisableCmd(false))
	c.AddCommand(create, list, passwd, a.userEmailCmd(), a.userLimitsCmd())
	return c
}

// readPassword asks for a new password twice on a terminal, or reads the
// first line of standard input.
func (a *App) readPassword(user string) (string, error) {
	if f, ok := a.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		ask := func(prompt string) (string, error) {
			fmt.Fprint(a.Stderr, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(a.Stderr)
			return string(b), err
		}
		pw, err := ask(fmt.Sprintf("New password for %s: ", user))
		if err != nil {
			return "", err
		}
		again, err := ask("Again: ")
		if err != nil {
			return "", err
		}
		if pw != again {
			return "", dspool.Invalid("password", "the two entries differ: nothing changed; run the command again")
		}
		return pw, nil
	}
	line, err := bufio.NewReader(io.LimitReader(a.Stdin, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", dspool.Invalid("password", "standard input is empty: give the password on its first line")
	}
	return line, nil
}

func (a *App) printUsers(us []*dspool.User) error { return a.printUsersAs(us, us) }

// printUsersAs prints users as a table, or v as JSON.
func (a *App) printUsersAs(v any, us []*dspool.User) error {
	return a.print(v, []string{"NAME", "UID", "GID", "ADMIN", "EMAIL", "DISABLED", "CREATED"}, func(add func(...any)) {
		for _, u := range us {
			add(u.Name, u.UID, u.GID, u.Admin, dash(u.Email), u.Disabled, u.CreatedAt.Local().Format("2006-01-02 15:04"))
		}
	})
}

// printAutoscale prints a pool's scaling policy for people.
func (a *App) printAutoscale(as *dspool.Autoscale) {
	w := a.Stdout
	fmt.Fprintf(w, "\nAutoscale: %d to %d nodes; idle nodes go after %s (%s first)", as.Min, as.Max,
		time.Duration(as.IdleTimeout), as.ScaleInPolicy)
	if as.WarmSpares > 0 {
		fmt.Fprintf(w, "; %d warm spare(s)", as.WarmSpares)
	}
	fmt.Fprintf(w, "; boot timeout %s; logins wait up to %s\n", time.Duration(as.BootTimeout), time.Duration(as.WaitTimeout))
	for _, r := range as.Rules {
		what := fmt.Sprintf("add %d", r.Step)
		if r.Action == dspool.ScaleIn {
			what = fmt.Sprintf("remove %d idle", r.Step)
		}
		fmt.Fprintf(w, "  rule: %s when %s, at most every %s\n", what, r.String(), time.Duration(r.Cooldown))
	}
	for _, sc := range as.Schedules {
		fmt.Fprintf(w, "  schedule: %s %s-%s %s: min %d", strings.Join(sc.Days, ","), sc.From, sc.To, sc.Timezone, sc.Min)
		if sc.Max != nil {
			fmt.Fprintf(w, ", max %d", *sc.Max)
		}
		fmt.Fprintln(w)
	}
}
