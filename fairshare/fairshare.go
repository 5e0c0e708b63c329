// Package fairshare orders a shared queue: it keeps each user's and team's
// recent usage, decayed with a half-life, works out their fair-share
// factors from it, and scores queued jobs by priority, age and fair share,
// as Slurm's multifactor priority does. It is pure: no I/O, no clock, no
// goroutines; the caller passes every time in and keeps the Ledger. It
// imports only the domain package, for the report it lays out.
//
// Usage is held resources over time: cpu-seconds, GPU-seconds and
// GiB-seconds of memory, each second counting half as much after every
// HalfLife. The three are weighed into one amount (Billing) to compare
// accounts.
//
// Shares: the accounts with work (queued or running) split the pool. Each
// team, and each user who runs work for no team, gets its raw share
// (default 1) of the whole; each user of a team gets their raw share of the
// team's part. Target is that normalized share.
//
// Factor: F = 2^(-E/S), where S is the account's target share and E its
// effective usage: the team's usage as a fraction of all usage, and for a
// user of a team their own fraction pulled towards the team's in
// proportion to their part of it, as Slurm's classic algorithm does
// (E = U + (E_team - U) * s/sum(s)). F is 1 for an account that used
// nothing, 0.5 for one that used exactly its share, and tends to 0 the
// more it used beyond its share.
//
// Score = priority + FairShareWeight * F + AgeWeight * min(age/MaxAge, 1):
// a user-chosen priority (bounded per team and user elsewhere) moves a job
// by at most its range, fair share by up to FairShareWeight.
package fairshare

import (
	"math"
	"time"
)

// Config sets the decay, the weights of the factors, and when a job
// reserves nodes. The zero value of each field means its default.
type Config struct {
	// HalfLife is how long until a second of use counts half (default
	// 7 days, Slurm's PriorityDecayHalfLife default).
	HalfLife time.Duration
	// FairShareWeight and AgeWeight are the points the two factors give
	// at most (defaults 1000 and 100); a job's priority adds as it is.
	FairShareWeight, AgeWeight float64
	// MaxAge is the wait at which the age factor is full (default 7 days).
	MaxAge time.Duration
	// ReserveAfter is how long a job waits before it goes first and may
	// reserve a node (default 10 minutes).
	ReserveAfter time.Duration
	// Billing weighs the resources into one amount (default DefaultBilling).
	Billing Billing
}

// Billing is what one second of each resource counts.
type Billing struct {
	CPU, GPU, GiB float64
}

// DefaultBilling counts a GPU as 8 cpus and 4GiB of memory as one cpu.
var DefaultBilling = Billing{CPU: 1, GPU: 8, GiB: 0.25}

// Defaults.
const (
	DefaultHalfLife        = 7 * 24 * time.Hour
	DefaultFairShareWeight = 1000
	DefaultAgeWeight       = 100
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultReserveAfter    = 10 * time.Minute
)

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.HalfLife <= 0 {
		c.HalfLife = DefaultHalfLife
	}
	if c.FairShareWeight == 0 {
		c.FairShareWeight = DefaultFairShareWeight
	}
	if c.AgeWeight == 0 {
		c.AgeWeight = DefaultAgeWeight
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.ReserveAfter <= 0 {
		c.ReserveAfter = DefaultReserveAfter
	}
	if c.Billing == (Billing{}) {
		c.Billing = DefaultBilling
	}
	return c
}

// AgeFactor is how far a wait of age is towards MaxAge, from 0 to 1.
func (c Config) AgeFactor(age time.Duration) float64 {
	if age <= 0 {
		return 0
	}
	return min(float64(age)/float64(c.MaxAge), 1)
}

// Score is the queue score of a job of priority that has waited age, for
// an account of fair-share factor f.
func (c Config) Score(priority int, age time.Duration, f float64) float64 {
	return float64(priority) + c.FairShareWeight*f + c.AgeWeight*c.AgeFactor(age)
}

// Reserves reports whether a job that has waited age goes first and may
// reserve a node.
func (c Config) Reserves(age time.Duration) bool { return age >= c.ReserveAfter }

// Usage is decayed use: seconds of each resource held.
type Usage struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	GPUSeconds float64 `json:"gpu_seconds"`
	GiBSeconds float64 `json:"memory_gib_seconds"`
}

// Add returns u plus v.
func (u Usage) Add(v Usage) Usage {
	return Usage{CPUSeconds: u.CPUSeconds + v.CPUSeconds, GPUSeconds: u.GPUSeconds + v.GPUSeconds, GiBSeconds: u.GiBSeconds + v.GiBSeconds}
}

// Scale returns u times f.
func (u Usage) Scale(f float64) Usage {
	return Usage{CPUSeconds: u.CPUSeconds * f, GPUSeconds: u.GPUSeconds * f, GiBSeconds: u.GiBSeconds * f}
}

// Billed is u weighed into one amount.
func (u Usage) Billed(b Billing) float64 {
	return u.CPUSeconds*b.CPU + u.GPUSeconds*b.GPU + u.GiBSeconds*b.GiB
}

// Rate is what work holds while it runs.
type Rate struct {
	CPUs, GPUs, GiB float64
}

// decay is what a second counts d after it.
func decay(d, halfLife time.Duration) float64 {
	return math.Exp2(-float64(d) / float64(halfLife))
}

// Held is the usage of r held from from to to, decayed to to: each
// second counts 2^(-(to-t)/halfLife).
func Held(r Rate, from, to time.Time, halfLife time.Duration) Usage {
	d := to.Sub(from)
	if d <= 0 {
		return Usage{}
	}
	// The integral of 2^(-x/h) over [0, d] is h/ln2 * (1 - 2^(-d/h)).
	h := halfLife.Seconds()
	secs := h / math.Ln2 * -math.Expm1(-float64(d)/float64(halfLife)*math.Ln2)
	return Usage{CPUSeconds: r.CPUs * secs, GPUSeconds: r.GPUs * secs, GiBSeconds: r.GiB * secs}
}

// Key is the account work is charged to: a user, for a team ("": none).
type Key struct {
	Team, User string
}

// Ledger is the decayed usage of every account, kept as it is charged, so
// nothing rescans history. The zero value is not usable: use NewLedger.
type Ledger struct {
	halfLife time.Duration
	accounts map[Key]*decayed
}

type decayed struct {
	u  Usage
	at time.Time // u is decayed to at
}

// NewLedger returns an empty ledger decaying with halfLife.
func NewLedger(halfLife time.Duration) *Ledger {
	return &Ledger{halfLife: halfLife, accounts: map[Key]*decayed{}}
}

// Charge adds to k the usage u, decayed to at.
func (l *Ledger) Charge(k Key, u Usage, at time.Time) {
	a := l.accounts[k]
	if a == nil {
		l.accounts[k] = &decayed{u: u, at: at}
		return
	}
	if at.After(a.at) {
		a.u, a.at = a.u.Scale(decay(at.Sub(a.at), l.halfLife)).Add(u), at
		return
	}
	a.u = a.u.Add(u.Scale(decay(a.at.Sub(at), l.halfLife)))
}

// Usage returns every account's usage decayed to now, in a map of the
// caller's own.
func (l *Ledger) Usage(now time.Time) map[Key]Usage {
	out := make(map[Key]Usage, len(l.accounts))
	for k, a := range l.accounts {
		out[k] = a.u.Scale(decay(now.Sub(a.at), l.halfLife))
	}
	return out
}

// Forget drops accounts whose billed usage at now is below min, so the
// ledger does not grow with every user that ever ran something.
func (l *Ledger) Forget(now time.Time, b Billing, min float64) {
	for k, a := range l.accounts {
		if a.u.Scale(decay(now.Sub(a.at), l.halfLife)).Billed(b) < min {
			delete(l.accounts, k)
		}
	}
}
