package web

import (
	"net/http"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

type homeData struct {
	Notebook *dspool.Notebook
	// Pools are those that take interactive work: where a Jupyter server
	// may start, with their node size.
	Pools []*api.PoolDetail
	SSH   string
}

func (d *Dashboard) home(w http.ResponseWriter, r *http.Request) {
	v := d.login(w, r)
	if v == nil {
		return
	}
	nb, err := v.api.Notebook(r.Context())
	if err != nil {
		d.fail(w, r, v, err)
		return
	}
	pools, err := v.api.Pools(r.Context())
	if err != nil {
		d.fail(w, r, v, err)
		return
	}
	data := homeData{Notebook: nb}
	for _, p := range pools {
		if p.Takes(dspool.WorkInteractive) {
			data.Pools = append(data.Pools, p)
		}
	}
	if d.o.SSH != "" {
		data.SSH = sshCommand(d.o.SSH, r.Host, v.user.Name)
	}
	d.render(w, r, http.StatusOK, "home", v, "Home", data)
}

// startNotebook and stopNotebook serve the home page's forms where its
// script does not run (the script calls the API itself).
func (d *Dashboard) startNotebook(w http.ResponseWriter, r *http.Request) {
	v := d.action(w, r)
	if v == nil {
		return
	}
	if _, err := v.api.StartNotebook(r.Context(), r.PostFormValue("pool")); err != nil {
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
