package share

import "testing"

func TestParseMountinfo(t *testing.T) {
	for _, c := range []struct{ line, point, fstype, opts string }{
		{"36 35 98:0 /mnt1 /mnt/point rw,noatime master:1 - ext3 /dev/root rw,errors=continue", "/mnt/point", "ext3", "rw,errors=continue"},
		{"120 29 0:52 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:70 - fuse.sshfs root@10.79.0.1:/s rw,user_id=0,group_id=0,allow_other",
			"/tmp/a b", "fuse.sshfs", "rw,user_id=0,group_id=0,allow_other"},
		{"121 29 0:53 / /m rw - fuse.sshfs h:/s rw,user_id=0,group_id=0", "/m", "fuse.sshfs", "rw,user_id=0,group_id=0"},
	} {
		p, f, o, ok := parseMountinfo(c.line)
		if !ok || p != c.point || f != c.fstype || o != c.opts {
			t.Errorf("parseMountinfo(%q) = %q %q %q %v", c.line, p, f, o, ok)
		}
	}
	if _, _, _, ok := parseMountinfo("garbage"); ok {
		t.Error("a line without ' - ' parsed")
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("36 35 98:0 /mnt1 /mnt/point rw,noatime master:1 - ext3 /dev/root rw,errors=continue")
	f.Add("1 2 3 4 \\0 - a b c")
	f.Fuzz(func(t *testing.T, line string) {
		p, _, _, ok := parseMountinfo(line)
		if ok && len(p) > len(line) {
			t.Fatalf("mount point %q longer than its line", p)
		}
	})
}
