// Package pgtest gives tests a PostgreSQL: the server DSPOOL_TEST_POSTGRES
// names (a postgres:// URL of a role that may create databases), or a
// throwaway cluster of Debian's PostgreSQL started for the test process
// (as the user postgres when the tests run as root). Each test gets a
// database of its own.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// Env names the server tests use, when set.
const Env = "DSPOOL_TEST_POSTGRES"

// RequireEnv, set to 1 (as CI does), makes a missing PostgreSQL fail the
// tests that need one rather than skip them.
const RequireEnv = "DSPOOL_REQUIRE_POSTGRES"

// Cluster is a PostgreSQL server the tests own.
type Cluster struct {
	// URL reaches the server as a role that may create databases.
	URL string
	dir string
	bin string
	as  []string
}

// Bin is the directory of Debian's PostgreSQL programs (the newest
// version installed), or "" when there is none.
func Bin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start starts a throwaway cluster on a free loopback port, fsync off
// unless durable (tests of what survives a crash keep it on). Stop removes
// it.
func Start(durable bool) (*Cluster, error) {
	bin := Bin()
	if bin == "" {
		return nil, errors.New("no PostgreSQL here (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
	}
	dir, err := os.MkdirTemp("", "dspool-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("PostgreSQL refuses to run as root, and there is no user postgres: %w", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c.as = []string{"runuser", "-u", "postgres", "--"}
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	fsync := "off"
	if durable {
		fsync = "on"
	}
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=%s -c max_connections=200", port, dir, fsync)
	if out, err := c.run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return c, nil
}

func (c *Cluster) run(prog string, args ...string) ([]byte, error) {
	argv := append(append(append([]string{}, c.as...), filepath.Join(c.bin, prog)), args...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

// Stop stops the cluster and removes its files.
func (c *Cluster) Stop() {
	if c == nil || c.dir == "" {
		return
	}
	c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	os.RemoveAll(c.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Server is the URL of the server the tests use: DSPOOL_TEST_POSTGRES, or
// "" when it is not set.
func Server() string { return os.Getenv(Env) }

// NewDatabase makes an empty database on the server at admin and returns
// its URL; it is dropped when tb ends.
func NewDatabase(tb testing.TB, admin string) string {
	tb.Helper()
	u, err := NewDatabaseURL(admin)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { DropDatabase(admin, u) })
	return u
}

// NewDatabaseURL makes an empty database on the server at admin and
// returns its URL.
func NewDatabaseURL(admin string) (string, error) {
	b := make([]byte, 6)
	rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	db, err := sql.Open("pgx", admin)
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DropDatabase drops the database at u, which NewDatabaseURL made.
func DropDatabase(admin, u string) {
	p, err := url.Parse(u)
	if err != nil {
		return
	}
	name := strings.TrimPrefix(p.Path, "/")
	db, err := sql.Open("pgx", admin)
	if err != nil {
		return
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}
