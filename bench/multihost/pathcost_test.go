package main

// The bare operations an SSH upload pays on each path, each measured alone
// on this machine, in cpu-seconds per GiB (the process's user and system
// time, every thread, per GiB moved; ns/op is per chunk):
//
//	go test -run '^$' -bench . -benchtime 2s ./bench/multihost
//
// OpenSSH direct: the client's encryption, a TCP hop, sshd's decryption, a
// pipe into the process. Through dspool: the same client, a TCP hop to the
// gateway, its SSH decryption (32 KiB packets), a copy out of the channel,
// TLS's encryption (16 KiB records, AES-128-GCM as the link negotiates),
// a second TCP hop to the node, the agent's TLS decryption, its copy out of
// crypto/tls and the pipe into the process. README.md sums them.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// cpuNow is the cpu time this process has spent, in seconds.
func cpuNow(tb testing.TB) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// perGiB runs the benchmark body and reports cpu-s/GiB for chunk bytes
// per iteration.
func perGiB(b *testing.B, chunk int, body func()) {
	b.SetBytes(int64(chunk))
	b.ResetTimer()
	c0 := cpuNow(b)
	body()
	b.StopTimer()
	b.ReportMetric((cpuNow(b)-c0)*float64(1<<30)/(float64(chunk)*float64(b.N)), "cpu-s/GiB")
}

func newGCM(b *testing.B) cipher.AEAD {
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	blk, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// benchAEAD seals (or opens) size-byte messages in place, as SSH's
// aes128-gcm does a packet and TLS 1.3 a record (a 4- or 5-byte header as
// additional data).
func benchAEAD(b *testing.B, size, ad int, open bool) {
	g := newGCM(b)
	nonce := make([]byte, g.NonceSize())
	hdr := make([]byte, ad)
	buf := make([]byte, size, size+g.Overhead())
	sealed := g.Seal(nil, nonce, buf, hdr)
	perGiB(b, size, func() {
		for range b.N {
			if open {
				if _, err := g.Open(buf[:0], nonce, sealed, hdr); err != nil {
					b.Fatal(err)
				}
				continue
			}
			g.Seal(buf[:0], nonce, buf[:size], hdr)
		}
	})
}

func BenchmarkSSHDecryptPacket32K(b *testing.B) { benchAEAD(b, 32<<10, 4, true) }
func BenchmarkTLSEncryptRecord16K(b *testing.B) { benchAEAD(b, 16<<10, 5, false) }
func BenchmarkTLSDecryptRecord16K(b *testing.B) { benchAEAD(b, 16<<10, 5, true) }

// BenchmarkCopy32K is one copy of the bytes in user space (out of a
// channel's buffer, out of crypto/tls's).
func BenchmarkCopy32K(b *testing.B) {
	src, dst := make([]byte, 32<<10), make([]byte, 32<<10)
	perGiB(b, len(src), func() {
		for range b.N {
			copy(dst, src)
		}
	})
}

// hop writes chunk-sized writes into w while a goroutine drains r: both
// ends' system calls and kernel copies.
func hop(b *testing.B, w io.Writer, r io.Reader, chunk int) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 256<<10)
		for {
			if _, err := r.Read(buf); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, chunk)
	perGiB(b, chunk, func() {
		for range b.N {
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	if c, ok := w.(io.Closer); ok {
		c.Close()
	}
	<-done
}

// BenchmarkPipe256K is a pipe from a writer to its reader (sshd or the
// agent to the process), 1 MiB of pipe as the agent sets.
func BenchmarkPipe256K(b *testing.B) {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	_, _ = unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	hop(b, w, r, 256<<10)
}

// BenchmarkTCPLoopback256K is a TCP connection, both ends (a hop between
// hosts here is a veth pair and a bridge: a little more).
func BenchmarkTCPLoopback256K(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	w, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	r := <-acc
	if r == nil {
		b.Fatal("accept failed")
	}
	defer r.Close()
	hop(b, w, r, 256<<10)
}
