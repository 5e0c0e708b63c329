package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/store"
)

// Control planes on one PostgreSQL store take turns at leading
// (docs/decisions/0039-leading-control-planes.md): `dspool server` stands by
// until it holds the store's lease, then starts as after a restart, and
// stops when it cannot renew the lease in time, as another may then lead.

const (
	// leaseTTL is how long a lease lasts unrenewed: a leader that dies is
	// followed within it and a campaign's gap.
	leaseTTL = 3 * time.Second
	// renewEvery is how often the leader renews it.
	renewEvery = leaseTTL / 4
	// campaignEvery is how often a control plane standing by asks for it.
	campaignEvery = 250 * time.Millisecond
)

// errLostLead is the end of a leader that could not keep its lease.
var errLostLead = errors.New("lost the lead: another control plane may lead now, so this one stopped (a supervisor starts it again, to stand by)")

// leadership is the lease a control plane leads under.
type leadership struct {
	db     *store.DB
	holder string
	term   int64
}

// termOf is the lease's term; 0 for none.
func (ld *leadership) termOf() int64 {
	if ld == nil {
		return 0
	}
	return ld.term
}

// awaitLead opens the store and stands by, answering the API with where
// the leader is, until it takes the lead. The store it returns is fenced
// at the lease's term.
func awaitLead(ctx context.Context, o planeOptions, log *slog.Logger) (*leadership, error) {
	db, err := store.Open(ctx, o.Store, store.Options{UIDBase: o.UIDBase})
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	ld := &leadership{db: db, holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))}
	address := o.leaseAddress()
	var standby *http.Server
	defer func() {
		if standby != nil {
			standby.Close()
		}
	}()
	t0 := time.Now()
	for {
		l, led, err := db.Campaign(ctx, ld.holder, address, leaseTTL)
		switch {
		case err != nil:
			log.Warn("cannot reach the store to ask for the lead; trying again", "err", err)
		case led:
			db.Fence(l.Term)
			ld.term = l.Term
			if standby != nil {
				log.Info("took the lead", "term", l.Term, "standing_by", time.Since(t0).Round(time.Millisecond).String())
			}
			return ld, nil
		case standby == nil:
			log.Info("standing by: another control plane leads", "leader", l.Address, "term", l.Term, "lease_left", l.Left.Round(time.Millisecond).String())
			if standby, err = serveStandby(o, db); err != nil {
				db.Close()
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			db.Close()
			return nil, ctx.Err()
		case <-time.After(campaignEvery):
		}
	}
}

// keep renews the lease until ctx ends, then resigns it; it calls lost
// when the lease could not be kept.
func (ld *leadership) keep(ctx context.Context, log *slog.Logger, lost func()) {
	last := time.Now()
	tick := time.NewTicker(renewEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = ld.db.Resign(rctx, ld.term, ld.holder)
			cancel()
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, renewEvery)
		err := ld.db.Renew(rctx, ld.term, ld.holder, leaseTTL)
		cancel()
		switch {
		case err == nil:
			last = time.Now()
		case errors.Is(err, store.ErrLostLead):
			log.Error("another control plane took the lead", "term", ld.term)
			lost()
			return
		case time.Since(last) > leaseTTL-renewEvery:
			log.Error("could not renew the lead in time", "term", ld.term, "err", err)
			lost()
			return
		default:
			log.Warn("could not renew the lead; trying again", "err", err)
		}
	}
}

// leaseAddress is where this control plane serves the API, as the lease
// tells the others.
func (o *planeOptions) leaseAddress() string {
	scheme := "https"
	if o.InsecureHTTP {
		scheme = "http"
	}
	host, port, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return o.Listen
	}
	if len(o.Advertise) > 0 {
		host = o.Advertise[0]
	} else if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// serveStandby answers on the API's address while this control plane
// stands by: alive (/healthz), not ready (/readyz, so that a load balancer
// sends nothing here), and every request told where the leader is.
func serveStandby(o planeOptions, db *store.DB) (*http.Server, error) {
	link, err := o.serverTLS()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (is another dspool running? pass --listen HOST:PORT)", o.Listen, err)
	}
	if link.cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*link.cert}, MinVersion: tls.VersionTLS12})
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintln(w, `{"status":"standby"}`)
			return
		}
		msg := "this control plane stands by"
		if l, err := db.Leader(r.Context()); err == nil && l.Address != "" {
			msg += "; the leader is at " + l.Address
		}
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		e := &dspool.Error{Code: dspool.EUnavailable, Message: msg + ": ask it, or the load balancer in front of both"}
		w.WriteHeader(api.HTTPStatus(e.Code))
		_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: e})
	})}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}
