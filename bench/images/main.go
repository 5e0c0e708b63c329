// Command images measures the start cost of a job in an image against the
// same job without one, with the real binary under `dspool up` (as root,
// with podman and runc): a job of `true` submitted through the API, one
// after another on an idle node, without an image, in an image on the node
// (by name), and in the same image saved to a file on the share (loaded
// once by the node, then found loaded). For each it prints the p50 and p90
// of submission to start (the agent started the job's process: podman's,
// for an image) and of submission to done (the job ended and its node
// reported it, the container removed). The image is a busybox-static root
// file system the benchmark imports (-image measures one of the node's
// instead). Without root, podman or busybox-static it says why and exits
// 0. See bench/README.md.
package main

import (
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
)

const (
	benchAdmin = "dspoolimages" // the admin `dspool up` creates, whose jobs these are
	uidOffset  = 400            // apart from the other benchmarks' uids
)

// Result is what a run measured.
type Result struct {
	Runs        int     `json:"runs"`
	CPUs        int     `json:"cpus"`
	Version     string  `json:"version,omitempty"`
	Podman      string  `json:"podman"`
	Image       string  `json:"image"`
	Plain       *Row    `json:"no_image"`
	ByName      *Row    `json:"image_by_name"`
	FromFile    *Row    `json:"image_from_file"`
	FirstLoadMs float64 `json:"first_load_done_ms"` // the file's first job, submission to done
	Load1Before float64 `json:"load1_before"`
	Load1After  float64 `json:"load1_after"`
}

// Row is one kind of job's samples, in ms.
type Row struct {
	Start *Dist `json:"submit_to_start"`
	Done  *Dist `json:"submit_to_done"`
}

// Dist is a set of samples in ms with nearest-rank percentiles.
type Dist struct {
	Samples []float64 `json:"samples_ms"`
	P50     float64   `json:"p50_ms"`
	P90     float64   `json:"p90_ms"`
}

func newDist(samples []float64) *Dist {
	s := slices.Sorted(slices.Values(samples))
	return &Dist{Samples: samples, P50: host.Pct(s, 50), P90: host.Pct(s, 90)}
}

func main() {
	short := flag.Bool("short", false, "a few runs: a quick check that everything works")
	runs := flag.Int("runs", 0, "jobs of each kind (default 30; 3 with -short)")
	image := flag.String("image", "", "measure this image of the node's (default: import a busybox-static one)")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	keep := flag.Bool("keep", false, "keep the temporary directory (dspool's data and its log up.log)")
	flag.Parse()
	n := 30
	if *short {
		n = 3
	}
	if *runs > 0 {
		n = *runs
	}
	if why := cannot(*image); why != "" {
		fmt.Printf("bench/images: not measured: %s\n", why)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, n, *image, *bin, *jsonOut, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// cannot says why this machine cannot run the benchmark, or "".
func cannot(image string) string {
	if os.Geteuid() != 0 {
		return "needs root (the agent runs jobs in images with podman as root)"
	}
	for _, p := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(p); err != nil {
			return "needs podman and runc (apt-get install podman runc)"
		}
	}
	if image == "" && staticBusybox() == "" {
		return "needs a static busybox for the image (apt-get install busybox-static), or -image NAME"
	}
	return ""
}

func run(ctx context.Context, n int, image, bin, jsonOut string, keep bool) error {
	r := &Result{Runs: n, CPUs: runtime.NumCPU(), Load1Before: host.Load1()}
	pr, err := host.Prepare(ctx, "dspool-bench-images-", bin, keep)
	if err != nil {
		return err
	}
	defer pr.Done()
	r.Version = pr.Version
	conf := filepath.Join(pr.Dir, "containers.conf")
	if err := os.WriteFile(conf, []byte("[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"), 0o644); err != nil {
		return err
	}
	pm := podman{conf: conf}
	if v, err := pm.run(ctx, nil, "--version"); err == nil {
		r.Podman = strings.TrimPrefix(strings.TrimSpace(v), "podman version ")
	}
	if image == "" {
		if image, err = importBusybox(ctx, pm, pr.Dir); err != nil {
			return err
		}
		defer func() { _, _ = pm.run(context.Background(), nil, "rmi", "--force", image) }()
	}
	r.Image = image
	defer host.NewAccount(benchAdmin)()
	share := filepath.Join(pr.Dir, "share")
	up, err := host.StartUp(ctx, pr.Bin, pr.Dir, []string{"--data", filepath.Join(pr.Dir, "data"), "--share", share,
		"--listen", "127.0.0.1:0", "--ssh-listen", "off", "--nodes", "1", "--admin", benchAdmin,
		"--uid-base", strconv.Itoa(host.FreeUIDBase(61000) + uidOffset)},
		func(cl *api.Client) bool { n, err := up0(ctx, cl); return err == nil && n > 0 })
	if err != nil {
		return err
	}
	defer up.Stop()
	me, err := up.Client.WhoAmI(ctx)
	if err != nil {
		return err
	}
	job := func(img string) (start, done float64, err error) {
		t := time.Now()
		j, err := up.Client.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}, CPUs: 500, Image: img}, 0)
		if err != nil {
			return 0, 0, err
		}
		for j.FinishedAt == nil {
			if j, err = up.Client.WaitJob(ctx, j.ID, time.Minute); err != nil {
				return 0, 0, err
			}
		}
		if j.State != dspool.JobSucceeded || j.StartedAt == nil {
			return 0, 0, fmt.Errorf("job %d in image %q: %s %s: %s", j.ID, img, j.State, j.Reason, j.Message)
		}
		return ms(j.StartedAt.Sub(t)), ms(j.FinishedAt.Sub(t)), nil
	}
	// The first job makes the user's home on the share, where the image
	// file goes.
	if _, _, err := job(""); err != nil {
		return err
	}
	file := filepath.Join(share, "home", me.Name, "bench-image.tar")
	if _, err := pm.run(ctx, nil, "save", "--quiet", "-o", file, image); err != nil {
		return err
	}
	if err := os.Chown(file, me.UID, me.GID); err != nil {
		return err
	}
	if _, r.FirstLoadMs, err = job("bench-image.tar"); err != nil {
		return err
	}
	kinds := []string{"", image, "bench-image.tar"}
	samples := make([][2][]float64, len(kinds))
	for i := -1; i < n; i++ { // one of each not counted: the first of each warms caches
		for k, img := range kinds {
			s, d, err := job(img)
			if err != nil {
				return fmt.Errorf("%w (dspool's log: %s; keep it with -keep)", err, up.Log)
			}
			if i >= 0 {
				samples[k][0], samples[k][1] = append(samples[k][0], s), append(samples[k][1], d)
			}
		}
	}
	rows := make([]*Row, len(kinds))
	for k := range kinds {
		rows[k] = &Row{Start: newDist(samples[k][0]), Done: newDist(samples[k][1])}
	}
	r.Plain, r.ByName, r.FromFile = rows[0], rows[1], rows[2]
	r.Load1After = host.Load1()
	report(os.Stdout, r)
	return host.WriteJSON(jsonOut, r)
}

// up0 counts the ready nodes.
func up0(ctx context.Context, cl *api.Client) (int, error) {
	nodes, err := cl.Nodes(ctx, "")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, nd := range nodes {
		if nd.State == dspool.NodeReady {
			n++
		}
	}
	return n, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func report(w io.Writer, r *Result) {
	fmt.Fprintf(w, "\ndspool jobs in images, %d cpus, load1 %.2f before and %.2f after", r.CPUs, r.Load1Before, r.Load1After)
	if r.Version != "" {
		fmt.Fprintf(w, " (%s)", r.Version)
	}
	fmt.Fprintf(w, "\n\nA job of `true`, %d of each kind in turn, one at a time on an idle node; image %s, podman %s\n\n", r.Runs, r.Image, r.Podman)
	fmt.Fprintf(w, "%-34s %16s %16s %16s %16s\n", "JOB", "TO START P50 MS", "TO START P90 MS", "TO DONE P50 MS", "TO DONE P90 MS")
	for _, row := range []struct {
		name string
		r    *Row
	}{{"no image", r.Plain}, {"image by name", r.ByName}, {"image from a file (loaded before)", r.FromFile}} {
		fmt.Fprintf(w, "%-34s %16.1f %16.1f %16.1f %16.1f\n", row.name, row.r.Start.P50, row.r.Start.P90, row.r.Done.P50, row.r.Done.P90)
	}
	fmt.Fprintf(w, "\nThe file's first job, which loads it: %.1f ms to done\n", r.FirstLoadMs)
	fmt.Fprintf(w, "An image costs %+.1f ms (by name) and %+.1f ms (from a file) from submission to done, p50\n",
		r.ByName.Done.P50-r.Plain.Done.P50, r.FromFile.Done.P50-r.Plain.Done.P50)
}

// podman runs podman with the settings these machines need for it (runc,
// cgroupfs, events in a file).
type podman struct{ conf string }

func (p podman) run(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	cmd.Stdin = stdin
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("podman %s: %v: %s", strings.Join(args, " "), err, host.Tail(ee.Stderr, 3))
		}
		return "", fmt.Errorf("podman %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// staticBusybox is the machine's statically linked busybox, or "".
func staticBusybox() string {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		static := !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
		f.Close()
		if static {
			return p
		}
	}
	return ""
}

// importBusybox imports a root file system of busybox-static into the
// node's podman store under a name of this run.
func importBusybox(ctx context.Context, pm podman, dir string) (string, error) {
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(staticBusybox())
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		return "", err
	}
	for _, c := range []string{"sh", "true"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", c)); err != nil {
			return "", err
		}
	}
	rb := make([]byte, 4)
	_, _ = rand.Read(rb)
	name := "localhost/dspool-bench-busybox:" + hex.EncodeToString(rb)
	tar := exec.CommandContext(ctx, "tar", "-C", root, "-c", ".")
	out, err := tar.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := tar.Start(); err != nil {
		return "", err
	}
	_, err = pm.run(ctx, out, "import", "--quiet", "-", name)
	if werr := tar.Wait(); err == nil {
		err = werr
	}
	return name, err
}
