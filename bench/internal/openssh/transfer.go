package openssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"time"
)

// Tput is the throughput of transfers of one size into a process (ssh ...
// 'cat >/dev/null', or cat itself for the local pipe).
type Tput struct {
	MiBPerS     float64   `json:"mib_per_s"`      // MiB / the median of DataS
	WallMiBPerS float64   `json:"wall_mib_per_s"` // MiB / the median of WallS
	DataS       []float64 `json:"data_s"`         // each transfer: from its first write's return to the process's exit
	WallS       []float64 `json:"wall_s"`         // each transfer: from starting the process to its exit (with ssh, the connection too)
	Error       string    `json:"error,omitempty"`
}

// Add records one transfer, as Transfer returns it.
func (tp *Tput) Add(data, wall time.Duration, err error) {
	if err != nil {
		tp.Error = err.Error()
		return
	}
	tp.DataS, tp.WallS = append(tp.DataS, data.Seconds()), append(tp.WallS, wall.Seconds())
}

// Finish sets the figures of the median transfer of mib MiB.
func (tp *Tput) Finish(mib int) {
	tp.MiBPerS, tp.WallMiBPerS = float64(mib)/median(tp.DataS), float64(mib)/median(tp.WallS)
}

// Spread is the slowest and fastest transfer of mib MiB, in MiB/s.
func (tp *Tput) Spread(mib int) string {
	return fmt.Sprintf("%.0f-%.0f", float64(mib)/slices.Max(tp.DataS), float64(mib)/slices.Min(tp.DataS))
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[(len(s)+1)/2-1]
}

// chunk is the size of each write into the process's stdin. It is larger
// than a pipe's buffer (64 KiB), so the first write returns only once the
// process reads its input: for ssh, once the session is open.
const chunk = 256 << 10

// Transfer writes mib MiB of zeros into the stdin of a new process name
// args, started with start (nil: cmd.Start), and waits for it to exit. It
// returns the time from the first write's return to the exit (the data),
// and from the start to the exit (wall).
func Transfer(ctx context.Context, mib int, start func(*exec.Cmd) error, name string, args ...string) (data, wall time.Duration, err error) {
	// Generous: 10 MiB/s would be very slow on loopback.
	timeout := time.Minute + time.Duration(mib)*time.Second/10
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr // stdout: /dev/null
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	if start == nil {
		start = (*exec.Cmd).Start
	}
	t0 := time.Now()
	if err := start(cmd); err != nil {
		return 0, 0, err
	}
	var t1 time.Time // set before written is sent
	written := make(chan error, 1)
	go func() {
		buf := make([]byte, chunk)
		var err error
		for i := 0; i < mib*(1<<20)/chunk && err == nil; i++ {
			if _, err = in.Write(buf); i == 0 {
				t1 = time.Now()
			}
		}
		written <- errors.Join(err, in.Close())
	}()
	err = cmd.Wait()
	t2 := time.Now()
	werr := <-written
	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return 0, 0, fmt.Errorf("%s: timed out after %s: %s", name, timeout, Errors(stderr.Bytes()))
	case err != nil:
		return 0, 0, fmt.Errorf("%s: %v: %s", name, err, Errors(stderr.Bytes()))
	case werr != nil:
		return 0, 0, fmt.Errorf("%s: writing its input: %v", name, werr)
	}
	return t2.Sub(t1), t2.Sub(t0), nil
}

// Transfer is the package's Transfer into `ssh ... command` on e.
func (e Endpoint) Transfer(ctx context.Context, mib int, cipher, command string) (data, wall time.Duration, err error) {
	return Transfer(ctx, mib, e.Start, Client, e.Args("ERROR", cipher, command)...)
}
