package host

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Load is what a load run measured: requests answered as wanted, their
// rate and latency, and the failures.
type Load struct {
	Requests   int     `json:"requests"` // answered as wanted
	Errors     int     `json:"errors"`   // failed, or answered otherwise
	FirstError string  `json:"first_error,omitempty"`
	WallS      float64 `json:"wall_s"`
	ReqPerS    float64 `json:"req_per_s"` // Requests / WallS
	P50Ms      float64 `json:"p50_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
}

// LoadClient is a keep-alive client with room for conc clients'
// connections, no compression and no redirects; tc verifies an HTTPS
// server (nil: plain HTTP).
func LoadClient(conc int, tc *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:     tc,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        max(64, 2*conc),
			MaxIdleConnsPerHost: max(64, 2*conc),
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Hammer runs conc clients, each calling request once untimed (which opens
// its connection) and then again and again for d. A call that returns an
// error is counted and not timed. It fails when a first call fails, ctx
// ends, or no call succeeded.
func Hammer(ctx context.Context, conc int, d time.Duration, request func() error) (Load, error) {
	var l Load
	var wg sync.WaitGroup
	warm := make([]error, conc)
	for i := range conc {
		wg.Go(func() { warm[i] = request() })
	}
	wg.Wait()
	if err := errors.Join(warm...); err != nil {
		return l, fmt.Errorf("first request: %w", err)
	}
	var mu sync.Mutex
	var lat []float64
	t0 := time.Now()
	end := t0.Add(d)
	for range conc {
		wg.Go(func() {
			var mine []float64
			var errs int
			var first error
			for time.Now().Before(end) && ctx.Err() == nil {
				s := time.Now()
				if err := request(); err != nil {
					errs++
					if first == nil {
						first = err
					}
					time.Sleep(10 * time.Millisecond) // no busy loop on a dead server
					continue
				}
				mine = append(mine, float64(time.Since(s).Microseconds())/1000)
			}
			mu.Lock()
			lat = append(lat, mine...)
			l.Errors += errs
			if first != nil && l.FirstError == "" {
				l.FirstError = first.Error()
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	l.WallS = time.Since(t0).Seconds()
	if err := ctx.Err(); err != nil {
		return l, err
	}
	if len(lat) == 0 {
		return l, fmt.Errorf("no request answered as wanted: %s", l.FirstError)
	}
	l.Requests = len(lat)
	l.ReqPerS = float64(l.Requests) / l.WallS
	s := slices.Sorted(slices.Values(lat))
	l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs = Pct(s, 50), Pct(s, 90), Pct(s, 99), s[len(s)-1]
	return l, nil
}

// Pct is the nearest-rank percentile of sorted s: the ceil(n*p/100)-th
// sample.
func Pct(s []float64, p int) float64 {
	i := (len(s)*p + 99) / 100
	return s[max(i, 1)-1]
}
