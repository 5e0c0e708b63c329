package api

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFramesRoundTrip(t *testing.T) {
	var b bytes.Buffer
	fw := NewFrameWriter(&b)
	big := bytes.Repeat([]byte("x"), MaxFrame+10)
	for _, f := range []struct {
		typ byte
		p   []byte
	}{{FrameData, []byte("hello")}, {FrameStderr, nil}, {FrameData, big}, {FrameExit, []byte(`{"status":3}`)}} {
		if err := fw.WriteFrame(f.typ, f.p); err != nil {
			t.Fatal(err)
		}
	}
	fr := NewFrameReader(&b)
	var got []byte
	var types []byte
	for {
		typ, p, err := fr.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, typ)
		if typ == FrameData {
			got = append(got, p...)
		}
	}
	if want := append([]byte("hello"), big...); !bytes.Equal(got, want) {
		t.Fatalf("data: got %d bytes, want %d", len(got), len(want))
	}
	if !bytes.Equal(types, []byte{FrameData, FrameStderr, FrameData, FrameData, FrameExit}) {
		t.Fatalf("types %v", types)
	}
}

func TestFramesRejectBadInput(t *testing.T) {
	for name, in := range map[string][]byte{
		"unknown type":      {9, 0, 0, 0, 1, 'x'},
		"oversized":         {FrameData, 0xff, 0xff, 0xff, 0xff},
		"truncated header":  {FrameData, 0, 0},
		"truncated payload": {FrameData, 0, 0, 0, 4, 'a'},
	} {
		_, _, err := NewFrameReader(bytes.NewReader(in)).ReadFrame()
		if !errors.Is(err, ErrFrame) {
			t.Errorf("%s: err = %v, want ErrFrame", name, err)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{FrameData, 0, 0, 0, 2, 'h', 'i', FrameEOF, 0, 0, 0, 0})
	f.Add([]byte{FrameWindow, 0, 0, 0, 8, 0, 0, 0, 80, 0, 0, 0, 24})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := NewFrameReader(bytes.NewReader(in))
		total := 0
		for {
			typ, p, err := fr.ReadFrame()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrFrame) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if typ < FrameData || typ > FrameExit || len(p) > MaxFrame {
				t.Fatalf("accepted frame type %d of %d bytes", typ, len(p))
			}
			total += 5 + len(p)
			if total > len(in) {
				t.Fatalf("read %d bytes of frames from %d bytes of input", total, len(in))
			}
		}
	})
}
