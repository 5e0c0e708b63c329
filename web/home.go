package web

import (
	"net/http"
	"strings"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

type homeData struct {
	Notebook *dspool.Notebook
	// Pools are those that take interactive work: where a Jupyter server
	// may start, with their node size.
	Pools []*api.PoolDetail
	// Profiles are those pools' session profiles: the sizes a server may
	// have there besides the pool's own.
	Profiles []profileChoice
	SSH      string
}

// profileChoice is a session profile of a pool, as the page offers it.
type profileChoice struct {
	Pool string
	Size dspool.SessionSize
}

func (d *Dashboard) home(v *visit) (string, any, error) {
	nb, err := v.api.Notebook(v.r.Context())
	if err != nil {
		return "", nil, err
	}
	pools, err := v.api.Pools(v.r.Context())
	if err != nil {
		return "", nil, err
	}
	data := homeData{Notebook: nb}
	for _, p := range pools {
		if p.Takes(dspool.WorkInteractive) {
			data.Pools = append(data.Pools, p)
			for _, z := range p.SessionSettings().Profiles {
				data.Profiles = append(data.Profiles, profileChoice{Pool: p.Name, Size: z})
			}
		}
	}
	if d.o.SSH != "" {
		data.SSH = sshCommand(d.o.SSH, v.r.Host, v.user.Name)
	}
	return "Home", data, nil
}

// startNotebook and stopNotebook serve the home page's forms where its
// script does not run (the script calls the API itself).
func (d *Dashboard) startNotebook(w http.ResponseWriter, r *http.Request) {
	v := d.action(w, r)
	if v == nil {
		return
	}
	// A profile comes as POOL+PROFILE, and names the pool too.
	pool, profile := r.PostFormValue("pool"), ""
	if p, name, ok := strings.Cut(r.PostFormValue("profile"), "+"); ok {
		pool, profile = p, name
	}
	if _, err := v.api.StartNotebookProfile(r.Context(), pool, profile); err != nil {
		d.fail(w, r, v, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (d *Dashboard) stopNotebook(w http.ResponseWriter, r *http.Request) {
	v := d.action(w, r)
	if v == nil {
		return
	}
	if _, err := v.api.StopNotebook(r.Context()); err != nil {
		d.fail(w, r, v, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
