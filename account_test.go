package dspool_test

import (
	"testing"

	"github.com/dspool/dspool"
)

func TestFreeUID(t *testing.T) {
	users := map[int]bool{100: true, 101: true}
	used := func(id int) bool { return users[id] }
	tests := []struct {
		name  string
		user  string
		accts []dspool.HostAccount
		want  int
	}{
		{"next", "ann", nil, 102},
		{"an account and a group of others hold the next two", "ann", []dspool.HostAccount{{Name: "x", ID: 102}, {Name: "y", ID: 103, Group: true}}, 104},
		{"the user's own account left on a node", "ann", []dspool.HostAccount{{Name: "ann", ID: 150}}, 150},
		{"own account whose group another holds", "ann", []dspool.HostAccount{{Name: "ann", ID: 150}, {Name: "lab", ID: 150, Group: true}}, 102},
		{"own account whose uid a user has", "ann", []dspool.HostAccount{{Name: "ann", ID: 101}}, 102},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dspool.FreeUID(tt.user, 102, tt.accts, used); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestForeignAndClashes(t *testing.T) {
	ann := &dspool.User{Name: "ann", UID: 100, GID: 100}
	accts := []dspool.HostAccount{{Name: "ann", ID: 100}, {Name: "ann", ID: 100, Group: true}, {Name: "bob", ID: 100}, {Name: "ann", ID: 105}}
	if got := dspool.Foreign(accts, []*dspool.User{ann}); len(got) != 2 || got[0].Name != "bob" || got[1].ID != 105 {
		t.Errorf("Foreign = %+v, want bob 100 and ann 105", got)
	}
	n := &dspool.Node{Name: "n1", Accounts: accts}
	if got := dspool.Clashes(ann, []*dspool.Node{n}); len(got) != 1 || got[0].Account.Name != "bob" {
		t.Errorf("Clashes = %+v, want bob's", got)
	}
	if got := dspool.NameClashes(ann, []*dspool.Node{n}); len(got) != 1 || got[0].Account.ID != 105 {
		t.Errorf("NameClashes = %+v, want ann 105", got)
	}
}
