package web

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"time"

	"github.com/dspool/dspool"
)

// usageDays is how many days the usage charts show.
const usageDays = 14

type usageData struct {
	Days int
	// Pools are node time and cost of the whole window, by pool.
	Pools []dspool.PoolUsage
	// Mine is the user's job and session time by day, oldest first.
	Mine []dayUsage
	// Chart and NodeChart are the series of the charts, as JSON for the
	// page's script: days (Unix seconds at midnight UTC) then the values.
	Chart, NodeChart string
}

type dayUsage struct {
	Day                 time.Time
	JobHours, SessHours float64
}

// usage reads the usage API once per day boundary (reports are totals
// since a time): a day's figure is the difference of two of them.
func (d *Dashboard) usage(v *visit) (string, any, error) {
	now := d.o.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	days := make([]time.Time, usageDays)
	for i := range days {
		days[i] = today.AddDate(0, 0, i-usageDays+1)
	}
	// byUser[i] and byPool[i] are the totals since days[i].
	byUser := make([]*dspool.UsageReport, usageDays)
	byPool := make([]*dspool.UsageReport, usageDays)
	for i, day := range days {
		var err error
		if byUser[i], err = report(v.r.Context(), v, day, dspool.UsageByUser); err == nil {
			byPool[i], err = report(v.r.Context(), v, day, dspool.UsageByPool)
		}
		if err != nil {
			return "", nil, err
		}
	}
	data := usageData{Days: usageDays, Pools: byPool[0].Pools}
	mine := func(rep *dspool.UsageReport) (job, sess float64) {
		for _, u := range rep.Users {
			if u.User == v.user.Name {
				return u.JobSeconds / 3600, u.SessionSeconds / 3600
			}
		}
		return 0, 0
	}
	nodeHours := func(rep *dspool.UsageReport, pool string) float64 {
		for _, p := range rep.Pools {
			if p.Pool == pool {
				return p.NodeHours
			}
		}
		return 0
	}
	chart := [][]float64{{}, {}, {}}
	var pools []string
	for _, p := range byPool[0].Pools {
		pools = append(pools, p.Pool)
	}
	nodeChart := make([][]float64, len(pools)+1)
	for i, day := range days {
		job, sess := mine(byUser[i])
		poolHours := make([]float64, len(pools))
		for k, p := range pools {
			poolHours[k] = nodeHours(byPool[i], p)
		}
		if i+1 < len(days) { // minus what came after the day
			nj, ns := mine(byUser[i+1])
			job, sess = job-nj, sess-ns
			for k, p := range pools {
				poolHours[k] -= nodeHours(byPool[i+1], p)
			}
		}
		job, sess = max(job, 0), max(sess, 0)
		data.Mine = append(data.Mine, dayUsage{Day: day, JobHours: job, SessHours: sess})
		chart[0] = append(chart[0], float64(day.Unix()))
		chart[1] = append(chart[1], job)
		chart[2] = append(chart[2], sess)
		nodeChart[0] = append(nodeChart[0], float64(day.Unix()))
		for k := range pools {
			nodeChart[k+1] = append(nodeChart[k+1], max(poolHours[k], 0))
		}
	}
	slices.Reverse(data.Mine) // the table: today first
	b, _ := json.Marshal(map[string]any{"series": []string{"Your jobs (hours)", "Your sessions (hours)"}, "data": chart})
	data.Chart = string(b)
	b, _ = json.Marshal(map[string]any{"series": pools, "data": nodeChart})
	data.NodeChart = string(b)
	return "Usage", data, nil
}

func report(ctx context.Context, v *visit, since time.Time, by dspool.UsageBy) (*dspool.UsageReport, error) {
	q := url.Values{"since": {since.Format(time.RFC3339)}, "by": {string(by)}}
	var rep dspool.UsageReport
	return &rep, v.api.Do(ctx, "GET", "/api/v1/usage?"+q.Encode(), nil, &rep)
}
