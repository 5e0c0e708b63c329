package web

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// jobsPage is how many jobs a page of the list shows.
const jobsPage = 100

type jobsData struct {
	Jobs  []*dspool.Job
	Pools []string
	// The filters as asked: State ("" for any), Pool ("" for any), and
	// Everyone (an admin's view of every user's jobs).
	State, Pool string
	Everyone    bool
	States      []dspool.JobState
	IsAdmin     bool
	// Older is the address of the next page ("": none); Live says the page
	// refreshes itself (the first page only: later ones stay put).
	Older string
	Live  bool
	// Why says why each queued job waits, by id.
	Why map[int64]string
	// Nodes are the names of the pools' nodes, by id.
	Nodes map[string]string
	// Self is the page's own address, which it refreshes from.
	Self string
}

var jobStates = []dspool.JobState{dspool.JobQueued, dspool.JobRunning, dspool.JobSucceeded, dspool.JobFailed, dspool.JobCancelled}

func (d *Dashboard) jobs(v *visit) (string, any, error) {
	q := v.r.URL.Query()
	data := jobsData{State: q.Get("state"), Pool: q.Get("pool"), Everyone: q.Get("all") == "true" && v.user.Admin,
		States: jobStates, IsAdmin: v.user.Admin}
	jq := api.JobQuery{Pool: data.Pool, AllUsers: data.Everyone, Limit: jobsPage}
	var err error
	if data.State != "" {
		if !slices.Contains(jobStates, dspool.JobState(data.State)) {
			return "", nil, dspool.Invalid("state", "%q is not a job state: choose one from the list", data.State)
		}
		jq.States = []string{data.State}
	}
	if jq.Before, err = before(q); err != nil {
		return "", nil, err
	}
	l, err := v.api.Jobs(v.r.Context(), jq)
	if err != nil {
		return "", nil, err
	}
	pools, err := v.api.Pools(v.r.Context())
	if err != nil {
		return "", nil, err
	}
	for _, p := range pools {
		data.Pools = append(data.Pools, p.Name)
	}
	data.Why, data.Nodes = waitReasons(l.Jobs, pools), nodeNames(pools...)
	data.Jobs, data.Live, data.Self = l.Jobs, jq.Before == 0, v.r.URL.RequestURI()
	data.Older = older(v.r.URL, l.Next)
	return "Jobs", data, nil
}

type jobData struct {
	*api.JobDetail
	// ArrayView: the page is the whole array's (its id without a task),
	// whose first task JobDetail is.
	ArrayView bool
	// Rerunnable: the array has failed or cancelled tasks to run again.
	Rerunnable bool
	Mine       bool
	// Attempt is the attempt whose log the page shows (the latest).
	Attempt int
	// Tasks are an array's tasks (the first page of them).
	Tasks []*dspool.Job
	// Why says why the job waits, while it is queued.
	Why string
	// Nodes are the names of its pool's nodes, by id.
	Nodes map[string]string
}

func (d *Dashboard) job(v *visit) (string, any, error) {
	ref := v.r.PathValue("ref")
	j, err := v.api.JobRef(v.r.Context(), ref)
	if err != nil {
		return "", nil, noJob(ref, err)
	}
	data := jobData{JobDetail: j, Mine: j.User == v.user.Name, Attempt: j.Attempt}
	if a, err := strconv.Atoi(v.r.URL.Query().Get("attempt")); err == nil && a >= 1 && a <= j.Attempt {
		data.Attempt = a
	}
	// An array's id alone names the whole array: its page lists the tasks.
	data.ArrayView = j.Array != nil && !strings.Contains(ref, "_")
	if data.ArrayView {
		l, err := v.api.Jobs(v.r.Context(), api.JobQuery{Array: j.Array.ID, Limit: jobsPage, AllUsers: j.User != v.user.Name})
		if err != nil {
			return "", nil, err
		}
		data.Tasks = l.Jobs
		data.Rerunnable = j.Array.Counts[dspool.JobFailed]+j.Array.Counts[dspool.JobCancelled] > 0
	}
	p, err := v.api.Pool(v.r.Context(), j.Pool)
	if err != nil && dspool.ErrorCode(err) != dspool.ENotFound {
		return "", nil, err
	}
	if p != nil {
		data.Nodes = nodeNames(p)
	}
	if j.State == dspool.JobQueued {
		data.Why = waitReason(j.Job, p)
	}
	title := "Job " + j.Ref()
	if data.ArrayView {
		title = fmt.Sprintf("Array %d", j.Array.ID)
	}
	if j.Name != "" {
		title += ": " + j.Name
	}
	return title, data, nil
}

// nodeNames are the names of the pools' nodes, by id.
func nodeNames(pools ...*api.PoolDetail) map[string]string {
	out := map[string]string{}
	for _, p := range pools {
		for _, n := range p.Nodes {
			out[n.ID] = n.Name
		}
	}
	return out
}

func (d *Dashboard) cancel(w http.ResponseWriter, r *http.Request) {
	v := d.action(w, r)
	if v == nil {
		return
	}
	j, err := v.api.CancelRef(r.Context(), r.PathValue("ref"))
	if err != nil {
		d.fail(w, r, v, noJob(r.PathValue("ref"), err))
		return
	}
	http.Redirect(w, r, "/jobs/"+url.PathEscape(j.Ref()), http.StatusSeeOther)
}

func (d *Dashboard) rerun(w http.ResponseWriter, r *http.Request) {
	v := d.action(w, r)
	if v == nil {
		return
	}
	j, err := v.api.Rerun(r.Context(), r.PathValue("ref"), r.PostFormValue("failed") == "true", nil)
	if err != nil {
		d.fail(w, r, v, noJob(r.PathValue("ref"), err))
		return
	}
	ref := j.Ref()
	if j.ArrayID != 0 {
		ref = strconv.FormatInt(j.ArrayID, 10)
	}
	http.Redirect(w, r, "/jobs/"+url.PathEscape(ref), http.StatusSeeOther)
}

// queueData is the work waiting in the pools, in the order the scheduler
// takes it, as `dspool queue` shows it: every user's jobs (their names
// where the pool shows them), each with its place, its score's factors,
// why it waits and when it may start.
type queueData struct {
	Me    string
	Admin bool
	Pools []queuePool
}

type queuePool struct {
	Pool  *api.PoolDetail
	Ready int
	Jobs  []dspool.QueueEntry
	Mine  int
}

func (d *Dashboard) queue(v *visit) (string, any, error) {
	pools, err := v.api.Pools(v.r.Context())
	if err != nil {
		return "", nil, err
	}
	q, err := v.api.Queue(v.r.Context(), "")
	if err != nil {
		return "", nil, err
	}
	data := queueData{Me: v.user.Name, Admin: v.user.Admin}
	for _, p := range pools {
		qp := queuePool{Pool: p}
		for _, n := range p.Nodes {
			if n.State == dspool.NodeReady {
				qp.Ready++
			}
		}
		for _, e := range q.Jobs {
			if e.Pool == p.Name {
				qp.Jobs = append(qp.Jobs, e)
				if e.User == v.user.Name {
					qp.Mine++
				}
			}
		}
		data.Pools = append(data.Pools, qp)
	}
	return "Queue", data, nil
}

// waitReasons says in words why each queued job of jobs waits, by id.
func waitReasons(jobs []*dspool.Job, pools []*api.PoolDetail) map[int64]string {
	byName := map[string]*api.PoolDetail{}
	for _, p := range pools {
		byName[p.Name] = p
	}
	out := map[int64]string{}
	for _, j := range jobs {
		if j.State == dspool.JobQueued {
			out[j.ID] = waitReason(j, byName[j.Pool])
		}
	}
	return out
}

// waitReason says in words why a queued job waits: what the API says, or
// else what its pool (nil when unknown) lacks.
func waitReason(j *dspool.Job, pool *api.PoolDetail) string {
	var why []string
	if j.OnHold {
		why = append(why, "held by its user: release it with dspool job release "+j.Ref())
	}
	if j.After != "" && !j.AfterMet {
		why = append(why, "waits for jobs it depends on ("+j.After+")")
	}
	if j.Waiting != "" {
		why = append(why, j.Waiting)
	}
	if len(why) > 0 {
		return strings.Join(why, "; ")
	}
	if pool != nil && !slices.ContainsFunc(pool.Nodes, func(n *dspool.Node) bool { return n.State == dspool.NodeReady }) {
		if pool.Autoscale != nil {
			return "pool " + pool.Name + " has no node ready: the autoscaler adds one for it"
		}
		return "pool " + pool.Name + " has no node ready: it waits until one joins (ask your pool's admin)"
	}
	return "next in line for a node with room"
}

// before reads a list's ?before= (0: the first page).
func before(q url.Values) (int64, error) {
	b := q.Get("before")
	if b == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(b, 10, 64)
	if err != nil || n < 1 {
		return 0, dspool.Invalid("before", "%q is not a page of the list: go back to the first page", b)
	}
	return n, nil
}

// older is the address of the page after u's in a list whose answer gave
// next ("" on the last page): u's own filters, before next.
func older(u *url.URL, next int64) string {
	if next == 0 {
		return ""
	}
	q := u.Query()
	q.Set("before", strconv.FormatInt(next, 10))
	return u.Path + "?" + q.Encode()
}

// noJob says to a browser user that the API found no job ref (the API's
// own answer names CLI commands); other errors pass unchanged.
func noJob(ref string, err error) error {
	if dspool.ErrorCode(err) != dspool.ENotFound {
		return err
	}
	return dspool.Errorf(dspool.ENotFound, "there is no job %s that you may see: it may be another user's, or ended so long ago that it was pruned; your jobs are on the Jobs page", ref)
}
