// Copyright 2026 The dspool Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package ssh

import (
	"bufio"
	"io"
	"sync"
)

// Inbound packets are read into buffers of their own (the reader keeps
// them): AES-GCM decrypts into one, other ciphers' packets are copied into
// one by transport.readPacket. Those that carry channel data are recycled
// through packetPool once the channel's reader has consumed them, so that a
// bulk transfer neither allocates nor zeroes 32 KiB per packet. Every
// buffer that goes back to the pool must have come from it: buffers
// allocated elsewhere would fill it with what nothing takes out.
const (
	// pooledMin is the smallest packet worth pooling.
	pooledMin = 4 << 10
	// pooledCap holds a full channel data packet (channelMaxPacket plus
	// its headers) with room to spare: a recycled buffer comes back one
	// byte shorter each time (see putPacketBuf), and is dropped once it no
	// longer holds a full packet.
	pooledCap = channelMaxPacket + 8<<10
)

var packetPool sync.Pool // of *[]byte, with cap >= pooledMin

// getPacketBuf returns a buffer of length n, recycled when it can be.
func getPacketBuf(n int) []byte {
	if n < pooledMin || n > pooledCap {
		return make([]byte, n)
	}
	if p, ok := packetPool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n, pooledCap)
}

// putPacketBuf recycles a packet returned by getPacketBuf, or a slice of one
// that starts inside it (the packet of a decrypted message starts after its
// padding length byte), once nothing refers to it.
func putPacketBuf(b []byte) {
	if cap(b) < pooledMin {
		return
	}
	b = b[:0]
	packetPool.Put(&b)
}

// readBufferSize is the size of a transport's read buffer: a few packets
// of channel data, so that a bulk transfer reads the network in a fraction
// of a system call per packet, and AES-GCM decrypts packets where they lie
// in it (readBuffered).
const readBufferSize = 256 << 10

// readBuffered returns the next n bytes of r. When r is a bufio.Reader that
// can hold them, they are left in its buffer rather than copied, and the
// caller must call skipBuffered(r, n) once done with them, before r is read
// again; otherwise they are read into *buf.
func readBuffered(r io.Reader, n int, buf *[]byte) ([]byte, error) {
	if br, ok := r.(*bufio.Reader); ok && n <= br.Size() {
		b, err := br.Peek(n)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the packet's length was read
		}
		return b, err
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	*buf = (*buf)[:n]
	if _, err := io.ReadFull(r, *buf); err != nil {
		return nil, err
	}
	return *buf, nil
}

// skipBuffered consumes what readBuffered(r, n, ...) left in r's buffer.
func skipBuffered(r io.Reader, n int) {
	if br, ok := r.(*bufio.Reader); ok && n <= br.Size() {
		br.Discard(n)
	}
}

// A freshPacketReader is a packetCipher whose readCipherPacket returns a
// buffer of its own for each packet, which transport.readPacket need not copy.
type freshPacketReader interface {
	freshPackets()
}
