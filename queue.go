package dspool

import "time"

// Queue is the waiting work of the pools, in the order the scheduler
// takes it, as of At (GET /api/v1/queue).
type Queue struct {
	At   time.Time    `json:"at"`
	Jobs []QueueEntry `json:"jobs"`
}

// Why a queued job waits (QueueEntry.Reason).
const (
	WaitStarting    = "starting"    // it is placed at the next pass
	WaitResources   = "resources"   // no node of its pool has room for it now
	WaitPriority    = "priority"    // there was room, and jobs ahead of it took it
	WaitReservation = "reservation" // it has reserved a node and starts there when work there ends
	WaitReserved    = "reserved"    // the node with room is reserved for an older job
	WaitLimit       = "limit"       // running it would take its team or user over a limit
	WaitNoNode      = "no_node"     // its pool has no ready node for batch work
	WaitHeld        = "held"        // not for the scheduler yet: held, waiting for other jobs, or parked by its array's cap
)

// QueueEntry is one queued job: its place in the queue, the factors of its
// score (Score = Priority + FairShare + Age, the two latter in points),
// why it waits and when it is expected to start.
type QueueEntry struct {
	Position int    `json:"position"` // from 1, in the whole queue
	Job      string `json:"job"`      // as users write it: "12", "40_7"
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	// User is "" where the pool hides other users' names.
	User      string   `json:"user"`
	Team      string   `json:"team,omitempty"`
	Pool      string   `json:"pool"`
	CPUs      MilliCPU `json:"cpus"`
	Memory    Bytes    `json:"memory"`
	GPUs      int      `json:"gpus"`
	TimeLimit Duration `json:"time_limit,omitempty"`
	// Score and its factors, in points.
	Score     float64 `json:"score"`
	Priority  int     `json:"priority"`
	FairShare float64 `json:"fair_share"`
	Age       float64 `json:"age"`
	// Reserving: it has waited long enough to go first and reserve a node.
	Reserving   bool      `json:"reserving,omitempty"`
	SubmittedAt time.Time `json:"submitted_at"`
	Reason      string    `json:"reason"`
	Detail      string    `json:"detail"`
	// EstimatedStart is when it is expected to start: now for one that
	// starts at the next pass, the start of its reservation, else as
	// Slurm's backfill plans it: each job in queue order takes the
	// earliest room that lasts its time limit, after the jobs ahead of it,
	// by the time limits of running work (the first 200 of each pool).
	// Nil: unknown, as when the room it needs is held by work without a
	// time limit.
	EstimatedStart *time.Time `json:"estimated_start"`
	// ReservedNode is the node (its ID, as Job.Node) it reserved, or the
	// node reserved for the job it waits behind; Detail names it.
	ReservedNode string `json:"reserved_node,omitempty"`
}

// ShareReport is each team's and user's share of the pools and their
// recent use, decayed with HalfLife, as of At (GET /api/v1/share).
type ShareReport struct {
	At       time.Time      `json:"at"`
	HalfLife Duration       `json:"half_life"`
	Teams    []ShareAccount `json:"teams"`
	Users    []ShareAccount `json:"users"`
}

// ShareAccount is one team's or user's standing. Shares is its raw share;
// Target its normalized share among the accounts with work (0 for one
// without); Usage its part of all recent use; EffectiveUsage that, for a
// user of a team, pulled towards the team's; Factor = 2^(-effective/target),
// from 0 to 1, what fair share adds to its jobs' scores, times the weight.
type ShareAccount struct {
	Name string `json:"name"` // "" where names are hidden
	// Team is the team a user's row counts for ("": work for no team).
	Team           string  `json:"team,omitempty"`
	Active         bool    `json:"active"` // has queued or running work
	Shares         float64 `json:"shares"`
	Target         float64 `json:"target"`
	Usage          float64 `json:"usage"`
	EffectiveUsage float64 `json:"effective_usage"`
	Factor         float64 `json:"factor"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	GPUSeconds     float64 `json:"gpu_seconds"`
	GiBSeconds     float64 `json:"memory_gib_seconds"`
}
