// Copyright 2026 The dspool Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package ssh

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestRecycledPacketsKeepData sends data and extended data through a channel
// in writes of random sizes and reads them in reads of random sizes, with
// each cipher: what arrives is what was sent, although the packets it
// arrives in are recycled as soon as they are read (packetPool).
func TestRecycledPacketsKeepData(t *testing.T) {
	for _, cipher := range []string{CipherAES128GCM, CipherChaCha20Poly1305, CipherAES128CTR} {
		t.Run(cipher, func(t *testing.T) {
			c1, c2, err := netPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer c1.Close()
			defer c2.Close()
			serverConf := &ServerConfig{NoClientAuth: true}
			serverConf.Ciphers = []string{cipher}
			serverConf.AddHostKey(testSigners["ecdsa"])
			done := make(chan *server, 1)
			go func() {
				s, err := newServer(c2, serverConf)
				if err != nil {
					t.Error(err)
				}
				done <- s
			}()
			clientConf := &ClientConfig{User: "user", HostKeyCallback: InsecureIgnoreHostKey()}
			clientConf.Ciphers = []string{cipher}
			client, _, reqs, err := NewClientConn(c1, "", clientConf)
			if err != nil {
				t.Fatal(err)
			}
			go DiscardRequests(reqs)
			srv := <-done
			if srv == nil {
				t.FailNow()
			}

			const size = 24 << 20
			rng := rand.New(rand.NewPCG(1, 2))
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch, in, err := client.OpenChannel("session", nil)
				if err != nil {
					t.Error(err)
					return
				}
				go DiscardRequests(in)
				wr := rand.New(rand.NewPCG(3, 4))
				for off := 0; off < size; {
					n := min(size-off, 1+wr.IntN(3*channelMaxPacket))
					w := io.Writer(ch)
					if wr.IntN(4) == 0 {
						w = ch.Stderr()
					}
					if _, err := w.Write(data[off : off+n]); err != nil {
						t.Error(err)
						return
					}
					off += n
				}
				ch.CloseWrite()
			}()

			nc, err := srv.Accept()
			if err != nil {
				t.Fatal(err)
			}
			ch, in, err := nc.Accept()
			if err != nil {
				t.Fatal(err)
			}
			go DiscardRequests(in)
			// Data and extended data are read in turn, in random sizes;
			// together they must be the bytes sent, in some interleaving
			// that keeps each stream's order: compare their hashes with
			// the hashes of the same split of the input.
			var got [2]bytes.Buffer
			var rwg sync.WaitGroup
			for i, r := range []io.Reader{ch, ch.Stderr()} {
				rwg.Add(1)
				go func() {
					defer rwg.Done()
					rr := rand.New(rand.NewPCG(uint64(5+i), 6))
					buf := make([]byte, 4*channelMaxPacket)
					for {
						n, err := r.Read(buf[:1+rr.IntN(len(buf))])
						got[i].Write(buf[:n])
						if err == io.EOF {
							return
						}
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			rwg.Wait()
			var want [2]bytes.Buffer
			wr := rand.New(rand.NewPCG(3, 4))
			for off := 0; off < size; {
				n := min(size-off, 1+wr.IntN(3*channelMaxPacket))
				i := 0
				if wr.IntN(4) == 0 {
					i = 1
				}
				want[i].Write(data[off : off+n])
				off += n
			}
			for i := range got {
				if g, w := sha256.Sum256(got[i].Bytes()), sha256.Sum256(want[i].Bytes()); g != w || got[i].Len() != want[i].Len() {
					t.Errorf("stream %d: got %d bytes (sha256 %x), want %d (%x)", i, got[i].Len(), g[:8], want[i].Len(), w[:8])
				}
			}
		})
	}
}
