package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/dspooltest"
)

// TestLoginReturnsToTheNotebook: a browser that opens a user's Jupyter URL
// without a login is sent to the login page with where it was going; the
// login returns there. Only a user's Jupyter path may be returned to: any
// other (another site, //host) goes to the pool's page. A wrong password
// speaks to a browser user, not of a CLI command.
func TestLoginReturnsToTheNotebook(t *testing.T) {
	p := dspooltest.New(t, dspooltest.Options{UIDBase: 49100})
	ctx := context.Background()
	if _, err := p.Admin.CreateUser(ctx, api.UserCreate{Name: "ada"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Admin.SetPassword(ctx, "ada", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, p.URL)
	deep := "/user/ada/lab/tree/notebooks/train.ipynb?kernel=1"
	r := b.do("GET", deep, map[string]string{"Accept": "text/html"}, "")
	if r.status != http.StatusSeeOther || r.loc != "/?next="+url.QueryEscape(deep) {
		t.Fatalf("a deep link without a login: %d to %q, want the login page with where it was going", r.status, r.loc)
	}
	if page := b.get(r.loc); !strings.Contains(page.body, `name="next" value="`+strings.ReplaceAll(deep, "&", "&amp;")+`"`) {
		t.Fatalf("the login page does not carry where to return:\n%s", page.body)
	}
	form := func(pw, next string) string {
		return url.Values{"username": {"ada"}, "password": {pw}, "next": {next}}.Encode()
	}
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	wrong := b.do("POST", "/login", hdr, form("wrong", deep))
	if wrong.status != http.StatusUnauthorized || strings.Contains(wrong.body, "dspool user passwd") || !strings.Contains(wrong.body, "Ask your pool") {
		t.Errorf("a wrong password: %d, the page says:\n%s\nwant a message for a browser user", wrong.status, wrong.body)
	}
	if ok := b.do("POST", "/login", hdr, form("correct horse battery", deep)); ok.status != http.StatusSeeOther || ok.loc != deep {
		t.Errorf("the login: %d to %q, want back to %q", ok.status, ok.loc, deep)
	}
	for _, next := range []string{"//evil.example/user/", "https://evil.example/user/ada/", "/api/v1/tokens", "/user/ada/\\evil"} {
		b := newBrowser(t, p.URL)
		if r := b.do("POST", "/login", hdr, form("correct horse battery", next)); r.status != http.StatusSeeOther || r.loc != "/" {
			t.Errorf("a login asked to return to %q: %d to %q, want the pool's page", next, r.status, r.loc)
		}
	}
}
