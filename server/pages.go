package server

import (
	"net/url"
	"strconv"

	"github.com/dspool/dspool"
)

// The lists that grow without bound (jobs, sessions, pool events, the
// audit log) come a page at a time, all alike (docs/decisions/0023):
// ?limit= (default 100, at most 10,000) and ?before= (the next of the page
// before; none: from the newest); the answer's next is the before of the
// page after it, absent on the last.

const (
	defaultPage = 100
	maxPage     = 10000
)

// page is what a request asks of a list.
type page struct {
	limit  int
	before int64
}

// parsePage reads ?limit= and ?before=.
func parsePage(q url.Values) (page, error) {
	p := page{limit: defaultPage}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			return p, dspool.Invalid("limit", "%q is out of range: give a number from 1 to %d", v, maxPage)
		}
		p.limit = n
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return p, dspool.Invalid("before", "%q is not a cursor: give the next of the page before", v)
		}
		p.before = n
	}
	return p, nil
}
