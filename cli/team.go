package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
)

func (a *App) teamCmd() *cobra.Command {
	c := &cobra.Command{Use: "team", Short: "Teams: who may use which pool, and their limits",
		Long: `Teams group users. A pool whose file lists teams (teams: [vision, nlp]) is
for the members of those teams; a pool that lists none is for everyone. A
team's limits cap what its running jobs and sessions hold at once; work over
a limit waits in the queue, with the reason.

Admins create and delete teams and set limits; a maintainer of a team adds
and removes its members.`,
		Example: "  dspool team create vision\n  dspool team add vision alice --maintainer\n  dspool team limits vision --gpus 8\n  dspool team list"}
	c.AddCommand(a.teamCreateCmd(), a.teamListCmd(), a.teamShowCmd(), a.teamAddCmd(), a.teamRemoveCmd(), a.teamDeleteCmd(), a.teamLimitsCmd())
	return c
}

func (a *App) teamCreateCmd() *cobra.Command {
	return &cobra.Command{
		Use: "create NAME", Short: "Create a team (admin)", Args: args(1, 1, "the new team's name", "dspool team create vision"),
		Example: "  dspool team create vision",
		RunE: func(cmd *cobra.Command, argv []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			t, err := cl.CreateTeam(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.printTeamsAs(t, []*dspool.Team{t})
		},
	}
}

func (a *App) teamListCmd() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List teams, their members and limits", Args: args(0, 0, "", "dspool team list"),
		Example: "  dspool team list\n  dspool team list -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ts, err := cl.Teams(cmd.Context())
			if err != nil {
				return err
			}
			return a.printTeamsAs(ts, ts)
		},
	}
}

func (a *App) printTeamsAs(v any, ts []*dspool.Team) error {
	return a.print(v, []string{"NAME", "MEMBERS", "LIMITS"}, func(add func(...any)) {
		for _, t := range ts {
			add(t.Name, dash(members(t)), t.Limits)
		}
	})
}

// members lists a team's members, maintainers marked: "alice*, bob".
func members(t *dspool.Team) string {
	var ms []string
	for _, m := range t.Members {
		if m.Maintainer {
			ms = append(ms, m.User+"*")
		} else {
			ms = append(ms, m.User)
		}
	}
	return strings.Join(ms, ", ")
}

func (a *App) teamShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show NAME", Short: "Show a team: members, limits and the pools it may use", Args: args(1, 1, "one team name", "dspool team show vision"),
		Example: "  dspool team show vision\n  dspool team show vision -o json",
		RunE: func(cmd *cobra.Command, argv []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			t, err := cl.Team(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			if ok, err := a.json(); ok || err != nil {
				return a.print(t, nil, nil)
			}
			w := a.Stdout
			fmt.Fprintf(w, "Team %s\n", t.Name)
			fmt.Fprintf(w, "  members:  %s\n", dash(members(t)))
			fmt.Fprintf(w, "  limits:   %s\n", t.Limits)
			for _, n := range limitNotes("team "+t.Name, t.Limits) {
				fmt.Fprintf(w, "            (%s)\n", n)
			}
			if pools, err := cl.Pools(cmd.Context()); err == nil {
				var granted, open []string
				for _, p := range pools {
					switch {
					case p.Open():
						open = append(open, p.Name)
					case slices.Contains(p.Teams, t.Name):
						granted = append(granted, p.Name)
					}
				}
				fmt.Fprintf(w, "  pools:    %s", dash(strings.Join(granted, ", ")))
				if len(open) > 0 {
					fmt.Fprintf(w, " (and the pools for everyone: %s)", strings.Join(open, ", "))
				}
				fmt.Fprintln(w)
			}
			if len(t.Members) > 0 {
				fmt.Fprintln(w, "  (* maintains the team)")
			}
			return nil
		},
	}
}

func (a *App) teamAddCmd() *cobra.Command {
	var maintainer bool
	c := &cobra.Command{
		Use: "add TEAM USER", Short: "Add a user to a team (admin, or a maintainer of the team)", Args: args(2, 2, "a team and a user", "dspool team add vision alice"),
		Long: `Add a user to a team. A maintainer of the team may add members; only an admin
makes one a maintainer (--maintainer). Adding a member again changes whether
they maintain the team: without --maintainer, a maintainer becomes a plain
member. Adding a member again as they are changes nothing.`,
		Example: "  dspool team add vision alice\n  dspool team add vision bob --maintainer",
		RunE: func(cmd *cobra.Command, argv []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			team, user := argv[0], argv[1]
			var before *dspool.TeamMember
			if t, err := cl.Team(cmd.Context(), team); err == nil {
				before = t.Member(user)
			}
			t, err := cl.AddTeamMember(cmd.Context(), team, user, maintainer)
			if err != nil {
				return err
			}
			switch {
			case before == nil:
			case before.Maintainer == maintainer:
				fmt.Fprintf(a.Stderr, "%s is already a member of team %s: nothing changed\n", user, team)
			case maintainer:
				fmt.Fprintf(a.Stderr, "%s now maintains team %s\n", user, team)
			default:
				fmt.Fprintf(a.Stderr, "%s no longer maintains team %s (--maintainer keeps them a maintainer)\n", user, team)
			}
			return a.printTeamsAs(t, []*dspool.Team{t})
		},
	}
	c.Flags().BoolVar(&maintainer, "maintainer", false, "the user maintains the team: adds and removes its members (admin)")
	return c
}

func (a *App) teamRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use: "remove TEAM USER", Short: "Remove a user from a team (admin, or a maintainer of the team)", Args: args(2, 2, "a team and a user", "dspool team remove vision alice"),
		Long: `Remove a user from a team. Their running work goes on; they can no longer
submit for the team or use the pools only it may use. A maintainer may remove
members who do not maintain the team.`,
		Example: "  dspool team remove vision alice",
		RunE: func(cmd *cobra.Command, argv []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			t, err := cl.RemoveTeamMember(cmd.Context(), argv[0], argv[1])
			if err != nil {
				return err
			}
			return a.printTeamsAs(t, []*dspool.Team{t})
		},
	}
}

func (a *App) teamDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use: "delete TEAM", Short: "Delete a team (admin)", Args: args(1, 1, "one team name", "dspool team delete vision"),
		Long: `Delete a team and its memberships. A team that a pool is granted to cannot
be deleted: take it out of the pool file's teams first. Jobs keep the name of
the team they ran for.`,
		Example: "  dspool team delete vision",
		RunE: func(cmd *cobra.Command, argv []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			if err := cl.DeleteTeam(cmd.Context(), argv[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.Stderr, "team %s deleted\n", argv[0])
			return nil
		},
	}
}

// limitFlags are the flags that set limits: a value sets one, "none" takes
// it away, and a flag not given leaves it as it is.
type limitFlags struct {
	cpus, memory, gpus, nodes, priority, defaultPriority, shares string
}

func (f *limitFlags) add(c *cobra.Command, whose string) {
	c.Flags().StringVar(&f.cpus, "cpus", "", "cpus the running work of "+whose+" may hold at once, e.g. 64 (none: no limit)")
	c.Flags().StringVar(&f.memory, "memory", "", "memory it may hold at once, e.g. 512GiB (none: no limit)")
	c.Flags().StringVar(&f.gpus, "gpus", "", "GPUs it may hold at once (none: no limit)")
	c.Flags().StringVar(&f.nodes, "nodes", "", "nodes autoscaling may add for its waiting work (0: none; none: no limit)")
	c.Flags().StringVar(&f.priority, "priority", "", "priorities its jobs may be submitted with, MIN..MAX, e.g. -100..100 (none: 0 or below, any for admins)")
	c.Flags().StringVar(&f.defaultPriority, "default-priority", "", "priority of its jobs submitted without one, within --priority (none: 0)")
	c.Flags().StringVar(&f.shares, "shares", "", "its fair share, against the others' with work (none: 1)")
}

func (f *limitFlags) any() bool {
	return f.cpus != "" || f.memory != "" || f.gpus != "" || f.nodes != "" || f.priority != "" || f.defaultPriority != "" || f.shares != ""
}

// apply changes l by the flags given.
func (f *limitFlags) apply(l *dspool.Limits) error {
	if f.cpus != "" {
		l.CPUs = nil
		if f.cpus != "none" {
			v, err := dspool.ParseCPU(f.cpus)
			if err != nil {
				return dspool.Invalid("--cpus", "%v (or none)", err)
			}
			l.CPUs = &v
		}
	}
	if f.memory != "" {
		l.Memory = nil
		if f.memory != "none" {
			v, err := dspool.ParseBytes(f.memory)
			if err != nil {
				return dspool.Invalid("--memory", "%v (or none)", err)
			}
			if v > 0 && v < dspool.MinMemory {
				return dspool.Invalid("--memory", "%s is less than 1MiB: give the unit, e.g. 512GiB", f.memory)
			}
			l.Memory = &v
		}
	}
	for _, x := range []struct {
		flag, val string
		dst       **int
	}{{"--gpus", f.gpus, &l.GPUs}, {"--nodes", f.nodes, &l.Nodes}, {"--shares", f.shares, &l.Shares}} {
		if x.val == "" {
			continue
		}
		*x.dst = nil
		if x.val != "none" {
			n, err := strconv.Atoi(x.val)
			if err != nil || n < 0 {
				return dspool.Invalid(x.flag, "%q is not a count: give a whole number, 0 or more (or none)", x.val)
			}
			*x.dst = &n
		}
	}
	if f.priority != "" {
		l.Priority = nil
		if f.priority != "none" {
			r, err := dspool.ParsePriorityRange("--priority", f.priority)
			if err != nil {
				return err
			}
			l.Priority = &r
		}
	}
	if f.defaultPriority != "" {
		l.DefaultPriority = nil
		if f.defaultPriority != "none" {
			n, err := strconv.Atoi(f.defaultPriority)
			if err != nil {
				return dspool.Invalid("--default-priority", "%q is not a whole number: give one from -1000 to 1000 (or none)", f.defaultPriority)
			}
			l.DefaultPriority = &n
		}
	}
	return l.Validate()
}

func (a *App) teamLimitsCmd() *cobra.Command {
	var f limitFlags
	c := &cobra.Command{
		Use: "limits TEAM [--cpus N] [--memory SIZE] [--gpus N] [--nodes N] [--priority MIN..MAX] [--default-priority N] [--shares N]", Short: "Show or set a team's limits (setting: admin)",
		Args: args(1, 1, "one team name", "dspool team limits vision --gpus 8"),
		Long: `Show or set what a team's work may hold at once: the cpus, memory and GPUs of
its running jobs and of its members' sessions in its pools, and how many nodes
autoscaling may add for its waiting work. A flag not given leaves that limit
as it is; "none" takes it away; 0 allows nothing (--nodes 0: autoscaling
adds no node for the team's waiting work, which runs only on nodes that are
there anyway). A job over a limit waits in the queue (its waiting line says
which limit); a login over a limit is refused with the reason. --priority
bounds the priorities the team's jobs may be submitted with (with the
user's own range, where set) and what its maintainers may raise a queued
job to; --default-priority is the priority of a job given none. --shares is
the team's fair share against the other teams with work (default 1; see
dspool share).`,
		Example: "  dspool team limits vision\n  dspool team limits vision --cpus 64 --gpus 8 --memory 512GiB --nodes 10\n  dspool team limits vision --gpus none\n  dspool team limits vision --priority -100..100 --default-priority 10\n  dspool team limits vision --shares 2",
		RunE: func(cmd *cobra.Command, argv []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			t, err := cl.Team(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			if f.any() {
				l := t.Limits
				if err := f.apply(&l); err != nil {
					return err
				}
				if t, err = cl.SetTeamLimits(cmd.Context(), t.Name, l); err != nil {
					return err
				}
			}
			return a.printLimits(t.Limits, "team "+t.Name, t.Limits)
		},
	}
	f.add(c, "the team")
	return c
}

// limitNotes says what a limit of zero means, which a bare "0 nodes" does
// not.
func limitNotes(whose string, l dspool.Limits) []string {
	var notes []string
	if l.CPUs != nil && *l.CPUs == 0 || l.Memory != nil && *l.Memory == 0 {
		notes = append(notes, "the work of "+whose+" can hold no cpu or memory, so none of its jobs or sessions runs")
	} else if l.GPUs != nil && *l.GPUs == 0 {
		notes = append(notes, "the work of "+whose+" can hold no GPU: its jobs that ask for one wait")
	}
	if l.Nodes != nil && *l.Nodes == 0 {
		notes = append(notes, "autoscaling adds no node for the waiting work of "+whose+": it runs only on nodes that are there anyway")
	}
	return notes
}

func (a *App) userLimitsCmd() *cobra.Command {
	var f limitFlags
	c := &cobra.Command{
		Use: "limits [USER] [--cpus N] [--memory SIZE] [--gpus N] [--nodes N] [--priority MIN..MAX] [--default-priority N] [--shares N]", Short: "Show a user's own limits (default: yours), or set them (admin)",
		Args: args(0, 1, "at most one user name", "dspool user limits alice --gpus 2"),
		Long: `Show or set what one user's work may hold at once, whichever team it runs
for: the cpus, memory and GPUs of their running jobs and sessions, and how
many nodes autoscaling may add for their waiting work. Without USER, your
own. A flag not given leaves that limit as it is; "none" takes it away; 0
allows nothing (--nodes 0: autoscaling adds no node for their waiting work).
Team limits apply as well. --priority bounds the priorities of their jobs
(where the team has a range too, both apply); --default-priority is the
priority of a job given none, before the team's. --shares is their fair
share against the others with work in their team, or, for work for no
team, against the teams (default 1; see dspool share).`,
		Example: "  dspool user limits\n  dspool user limits alice\n  dspool user limits alice --cpus 16 --gpus 2\n  dspool user limits alice --cpus none",
		RunE: func(cmd *cobra.Command, argv []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			if len(argv) == 0 {
				me, err := cl.Whoami(cmd.Context())
				if err != nil {
					return err
				}
				argv = []string{me.Name}
			}
			ul, err := cl.UserLimits(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			if f.any() {
				l := ul.Limits
				if err := f.apply(&l); err != nil {
					return err
				}
				if ul, err = cl.SetUserLimits(cmd.Context(), argv[0], l); err != nil {
					return err
				}
			}
			return a.printLimits(ul, "user "+argv[0], ul.Limits)
		},
	}
	f.add(c, "the user")
	return c
}

// printLimits prints whose limits they are, or v as JSON.
func (a *App) printLimits(v any, whose string, l dspool.Limits) error {
	if ok, err := a.json(); ok || err != nil {
		return a.print(v, nil, nil)
	}
	fmt.Fprintf(a.Stdout, "limits of %s: %s\n", whose, l)
	for _, n := range limitNotes(whose, l) {
		fmt.Fprintf(a.Stdout, "  (%s)\n", n)
	}
	return nil
}
