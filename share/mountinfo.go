package share

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// mountOf returns the file system type and super-block options of the
// mount that holds dir, from /proc/self/mountinfo ("" when not found).
func mountOf(dir string) (fstype, opts string) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", ""
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", ""
	}
	defer f.Close()
	best := -1
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mp, fs, so, ok := parseMountinfo(sc.Text())
		if !ok || len(mp) <= best || !within(real, mp) {
			continue
		}
		best, fstype, opts = len(mp), fs, so
	}
	return fstype, opts
}

// parseMountinfo returns a line's mount point, file system type and
// super-block options: "36 35 98:0 /mnt1 /mnt/point rw,noatime master:1 -
// ext3 /dev/root rw,errors=continue" (proc(5)).
func parseMountinfo(line string) (point, fstype, opts string, ok bool) {
	pre, post, found := strings.Cut(line, " - ")
	f, g := strings.Fields(pre), strings.Fields(post)
	if !found || len(f) < 5 || len(g) < 3 {
		return "", "", "", false
	}
	return unescapeMount(f[4]), g[0], g[2], true
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func within(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// onlyForItsOwner says whether the share at dir is a FUSE mount (sshfs)
// without allow_other, which no account but the one that mounted it may
// use, whatever the files' modes say.
func onlyForItsOwner(dir string) bool {
	fstype, opts := mountOf(dir)
	if fstype != "fuse" && !strings.HasPrefix(fstype, "fuse.") {
		return false
	}
	for _, o := range strings.Split(opts, ",") {
		if o == "allow_other" {
			return false
		}
	}
	return true
}
