package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/hashicorp/yamux"
)

// KeyAdd is the body of POST /api/v1/keys: Key is one line of an
// authorized_keys file; an empty User means the caller.
type KeyAdd struct {
	User string `json:"user,omitempty"`
	Key  string `json:"key"`
}

// PasswordSet is the body of PUT /api/v1/users/{name}/password; an empty
// Password removes it.
type PasswordSet struct {
	Password string `json:"password"`
}

// SessionList is the answer of GET /api/v1/sessions.
type SessionList struct {
	Sessions []*dspool.Session `json:"sessions"`
	// Next is the value to pass as before= for the next page, of older
	// sessions (0 when there is none).
	Next int64 `json:"next,omitempty"`
}

// SessionUpgrade is the Upgrade token of a stream the control plane opens
// to an agent for one channel of an interactive session.
const SessionUpgrade = "dspool-session/1"

// SessionSetup is what an agent needs to host a session: the account, the
// home on the share, and the reservation that bounds its processes. Every
// channel request carries it, so the first one sets the session up.
type SessionSetup struct {
	Session   string          `json:"session"`
	Pool      string          `json:"pool"`
	User      RunAs           `json:"user"`
	Home      string          `json:"home"`      // relative to the share
	Notebooks string          `json:"notebooks"` // relative to the share; linked at ~/notebooks/remote
	CPUs      dspool.MilliCPU `json:"cpus"`
	Memory    dspool.Bytes    `json:"memory"`
	// GPUs are the indices of the node's GPUs the session holds: its
	// processes can open no other.
	GPUs       []int  `json:"gpus,omitempty"`
	Forwarding string `json:"forwarding"`
	// Secrets are the values of the secrets the user gives their
	// sessions; the agent sets them up with the session.
	Secrets []SecretValue `json:"secrets,omitempty"`
	// WorkToken is the API token the session's processes get in
	// DSPOOL_TOKEN: its user's, good only while the session lasts.
	WorkToken string `json:"work_token,omitempty"`
	// Image, when set, is the pool's image, which the session's shells and
	// commands run in (as AttemptSpec has it: a name on the node, or with
	// ImageFile a file on the share); ImageNetwork is host or none.
	Image        string `json:"image,omitempty"`
	ImageFile    bool   `json:"image_file,omitempty"`
	ImageNetwork string `json:"image_network,omitempty"`
}

// Channel kinds.
const (
	ChannelShell     = "shell"
	ChannelExec      = "exec"
	ChannelSubsystem = "subsystem"
)

// PTY is a terminal the client asked for.
type PTY struct {
	Term string `json:"term"`
	Cols uint32 `json:"cols"`
	Rows uint32 `json:"rows"`
}

// ChannelRequest starts one process of a session: POST /sessions/channel
// with Upgrade: dspool-session/1. After the 101 answer the stream carries
// frames (see WriteFrame).
type ChannelRequest struct {
	SessionSetup
	Kind    string            `json:"kind"`
	Command string            `json:"command,omitempty"` // exec: the command line; subsystem: its name
	PTY     *PTY              `json:"pty,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// Client is "IP PORT" of the SSH client, and Server "IP PORT" of the
	// gateway, for SSH_CLIENT and SSH_CONNECTION.
	Client string `json:"client,omitempty"`
	Server string `json:"server,omitempty"`
	// Data, when set, asks the agent to carry stdin and stdout on a
	// connection of their own (DataUpgrade, this token in DataTokenHeader)
	// rather than in frames: the bytes then go from socket to pipe without
	// passing through the agent's memory. The agent's 101 answer says which
	// it did in DataModeHeader.
	Data string `json:"data,omitempty"`
	// Dial, when set, carries the channel on connections the agent opens
	// to an SSH gateway of its own process rather than on this stream
	// (GatewayChannel): the agent answers 200 once they are open.
	Dial *Dial `json:"dial,omitempty"`
}

// The data connection of a session channel.
const (
	DataUpgrade     = "dspool-data/1"
	DataTokenHeader = "Dspool-Channel"
	DataModeHeader  = "Dspool-Data"
	DataModeConn    = "conn"   // stdin and stdout are on the data connection
	DataModeFrames  = "frames" // everything is in frames on the stream
)

// ForwardRequest connects a stream to Host:Port as seen from the node:
// POST /sessions/forward with Upgrade; after the 101 answer the stream
// carries the connection's bytes.
type ForwardRequest struct {
	SessionSetup
	Host string `json:"host"`
	Port int    `json:"port"`
	// Dial: as in ChannelRequest.
	Dial *Dial `json:"dial,omitempty"`
}

// SessionEnd ends a session on its node: every process left in it is
// killed. POST /sessions/end.
type SessionEnd struct {
	Session string `json:"session"`
}

// Exit is how a session's process ended.
type Exit struct {
	Status  int    `json:"status"`
	Signal  string `json:"signal,omitempty"` // without SIG, as SSH names it
	Message string `json:"message,omitempty"`
}

// Frame types of a session channel stream. The control plane sends Data
// (stdin), EOF, Window and Signal; the agent sends Data (stdout), Stderr,
// and Exit last.
const (
	FrameData   byte = 1
	FrameStderr byte = 2
	FrameEOF    byte = 3
	FrameWindow byte = 4 // 4 bytes cols, 4 bytes rows, big endian
	FrameSignal byte = 5 // the signal name
	FrameExit   byte = 6 // JSON Exit
)

// MaxFrame is the largest frame payload; a larger one breaks the stream.
const MaxFrame = 1 << 20

// pumpChunk is how much Pump reads into one frame: big frames mean fewer
// writes (and system calls) per byte on the agent connection.
const pumpChunk = 256 << 10

// ErrFrame is a malformed frame.
var ErrFrame = errors.New("malformed session frame")

// FrameWriter writes frames from several goroutines, each frame whole.
type FrameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewFrameWriter returns a FrameWriter on w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// WriteFrame writes one frame: a type byte, a 4-byte big-endian length and
// the payload. Payloads longer than MaxFrame are split.
func (fw *FrameWriter) WriteFrame(typ byte, p []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for {
		n := min(len(p), MaxFrame)
		if cap(fw.buf) < 5+n {
			fw.buf = make([]byte, 5+max(n, 32<<10))
		}
		b := fw.buf[:5+n]
		b[0] = typ
		binary.BigEndian.PutUint32(b[1:5], uint32(n))
		copy(b[5:], p[:n])
		if _, err := fw.w.Write(b); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// Pump copies r to frames of type typ until r ends, reading straight into
// the frame buffer (no copy between reading and writing). It returns the
// bytes copied and r's error (nil at EOF) or the write error.
func (fw *FrameWriter) Pump(typ byte, r io.Reader, count func(int)) (int64, error) {
	buf := make([]byte, 5+pumpChunk)
	var total int64
	for {
		n, err := r.Read(buf[5:])
		if n > 0 {
			buf[0] = typ
			binary.BigEndian.PutUint32(buf[1:5], uint32(n))
			fw.mu.Lock()
			_, werr := fw.w.Write(buf[:5+n])
			fw.mu.Unlock()
			if werr != nil {
				return total, werr
			}
			total += int64(n)
			if count != nil {
				count(n)
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Write writes p as Data frames, so a FrameWriter is an io.Writer.
func (fw *FrameWriter) Write(p []byte) (int, error) {
	if err := fw.WriteFrame(FrameData, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// FrameReader reads frames.
type FrameReader struct {
	r   io.Reader
	hdr [5]byte
	buf []byte
}

// NewFrameReader returns a FrameReader on r.
func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{r: r} }

// ReadFrame reads the next frame. The payload is valid until the next
// call. A truncated frame, an unknown type or an oversized length is
// ErrFrame; a clean end between frames is io.EOF.
func (fr *FrameReader) ReadFrame() (byte, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, nil, fmt.Errorf("%w: truncated header", ErrFrame)
		}
		return 0, nil, err
	}
	typ, n := fr.hdr[0], binary.BigEndian.Uint32(fr.hdr[1:])
	if typ < FrameData || typ > FrameExit {
		return 0, nil, fmt.Errorf("%w: type %d", ErrFrame, typ)
	}
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFrame, n, MaxFrame)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, max(int(n), pumpChunk))
	}
	b := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		return 0, nil, fmt.Errorf("%w: truncated payload: %v", ErrFrame, err)
	}
	return typ, b, nil
}

// MuxConfig is the yamux configuration of the agent connection, the same on
// both ends: keepalives find a dead peer within seconds, and a stream may
// have StreamWindow bytes in flight, so one session's bulk copy is not held
// back by window updates.
func MuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	c.KeepAliveInterval = 5 * time.Second
	c.ConnectionWriteTimeout = 10 * time.Second
	c.StreamOpenTimeout = 10 * time.Second
	c.MaxStreamWindowSize = StreamWindow
	return c
}

// StreamWindow is the most a stream of the agent connection buffers.
const StreamWindow = 2 << 20

// NotebookStart is the body of POST /api/v1/notebook: the interactive pool
// (empty: the default one), and the size of the server's session: one of
// the pool's session profiles, or a size inline (8cpu-64gib-1gpu); empty:
// the pool's own.
type NotebookStart struct {
	Pool    string `json:"pool,omitempty"`
	Profile string `json:"profile,omitempty"`
}

// NotebookSpec starts a user's Jupyter server in their session:
// POST /sessions/notebook. The agent answers once it serves, with
// NotebookStarted, or with an error holding its last log lines.
type NotebookSpec struct {
	SessionSetup
	Command []string        `json:"command"`
	BaseURL string          `json:"base_url"` // /user/NAME/
	Token   string          `json:"token"`    // the server's secret; the control plane sends it, browsers never see it
	Timeout dspool.Duration `json:"timeout"`
}

// NotebookStarted is the agent's answer to NotebookSpec.
type NotebookStarted struct {
	Port int `json:"port"`
}

// NotebookRef names the Jupyter server of a session: POST
// /sessions/notebook/stop, and POST /sessions/notebook/connect (Upgrade:
// a stream to the server's port on the node's loopback).
type NotebookRef struct {
	Session string `json:"session"`
}

// NotebookActivity is what a node sees of a Jupyter server's use: the cpu
// its process tree has used in all, and whether a kernel is busy now.
// POST /sessions/notebook/activity with a NotebookRef.
type NotebookActivity struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	KernelsBusy int     `json:"kernels_busy"`
	Kernels     int     `json:"kernels"`
}
