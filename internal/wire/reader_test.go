package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// countingBudget is a Budget for tests: it fails past limit and remembers
// what is held.
type countingBudget struct {
	held, peak, limit int
}

var errNoBudget = errors.New("no budget")

func (b *countingBudget) Acquire(n int) error {
	if n <= 0 {
		panic("acquire of a non-positive size")
	}
	if b.held+n > b.limit {
		return errNoBudget
	}
	b.held += n
	b.peak = max(b.peak, b.held)
	return nil
}

func (b *countingBudget) Release(n int) {
	b.held -= n
	if b.held < 0 {
		panic("released more than acquired")
	}
}

// meteredReader delivers data in chunks of at most chunk bytes and counts
// what it delivered.
type meteredReader struct {
	data      []byte
	chunk     int
	delivered int
}

func (m *meteredReader) Read(p []byte) (int, error) {
	if len(m.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, m.data[:min(len(m.data), m.chunk)])
	m.data = m.data[n:]
	m.delivered += n
	return n, nil
}

// A header declaring a 4 MB frame followed by a little of its body makes
// the reader hold about what arrived, not what was declared.
func TestReaderMemoryFollowsArrivedBytes(t *testing.T) {
	const initial, declared, sent = 32 << 10, 4 << 20, 100 << 10
	stream := binary.BigEndian.AppendUint32(nil, declared-4)
	stream = append(stream, make([]byte, sent)...)
	b := &countingBudget{limit: 8 << 20}
	rd := NewReader(&meteredReader{data: stream, chunk: 1 << 20}, initial, 8<<20)
	rd.SetBudget(b)
	if _, err := rd.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Next: %v", err)
	}
	if got := rd.BufferSize(); got > 2*len(stream) {
		t.Fatalf("buffer %d bytes after %d arrived (declared %d)", got, len(stream), declared)
	}
	// The budget is reserved for the whole frame at once.
	if b.held != declared-initial {
		t.Fatalf("budget held %d, want %d", b.held, declared-initial)
	}
	rd.Close()
	if b.held != 0 || rd.BufferSize() != initial {
		t.Fatalf("after Close: budget %d, buffer %d", b.held, rd.BufferSize())
	}
}

func TestReaderShrinksAfterLargeFrame(t *testing.T) {
	const initial = 1024
	var stream []byte
	stream = AppendPut(stream, 1, 0, []byte("big"), make([]byte, 100_000))
	stream = AppendGet(stream, 2, 0, []byte("small"))
	stream = AppendPut(stream, 3, 0, []byte("big"), make([]byte, 50_000))
	stream = AppendPut(stream, 4, 0, []byte("big"), make([]byte, 60_000))
	stream = AppendGet(stream, 5, 0, []byte("small"))
	b := &countingBudget{limit: 1 << 20}
	rd := NewReader(&meteredReader{data: stream, chunk: 7000}, initial, 1<<20)
	rd.SetBudget(b)
	for id := uint64(1); id <= 5; id++ {
		f, err := rd.Next()
		if err != nil || f.ID != id {
			t.Fatalf("frame %d: %+v %v", id, f.ID, err)
		}
		if len(f.Body) < 1000 {
			// A small frame after large ones: back to the initial buffer.
			if rd.BufferSize() != initial || b.held != 0 {
				t.Fatalf("frame %d: buffer %d, budget %d", id, rd.BufferSize(), b.held)
			}
		} else if b.held < rd.BufferSize()-initial {
			t.Fatalf("frame %d: buffer %d with only %d budgeted", id, rd.BufferSize(), b.held)
		}
	}
	if _, err := rd.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: %v", err)
	}
	if b.held != 0 {
		t.Fatalf("budget %d held at EOF", b.held)
	}
}

func TestReaderBudgetRefused(t *testing.T) {
	b := &countingBudget{limit: 10_000}
	rd := NewReader(bytes.NewReader(AppendPut(nil, 1, 0, []byte("k"), make([]byte, 20_000))), 4096, 1<<20)
	rd.SetBudget(b)
	if _, err := rd.Next(); !errors.Is(err, errNoBudget) {
		t.Fatalf("Next: %v, want the budget's error", err)
	}
	if b.held != 0 || rd.BufferSize() != 4096 {
		t.Fatalf("after a refused budget: held %d, buffer %d", b.held, rd.BufferSize())
	}
}

// FuzzReaderMemory reads arbitrary bytes, delivered in chunks of
// arbitrary size, through a Reader with a budget: the buffer never exceeds
// twice what arrived (whatever the length fields declare), every byte past
// the initial buffer is budgeted, Close returns the whole budget, and the
// bytes allocated stay proportional to the input.
func FuzzReaderMemory(f *testing.F) {
	f.Add(uint16(1), AppendPut(nil, 1, 0, []byte("k"), make([]byte, 300)))
	f.Add(uint16(64), binary.BigEndian.AppendUint32(nil, 1<<20))
	f.Add(uint16(7), append(AppendGet(nil, 1, 0, []byte("k")), binary.BigEndian.AppendUint32(nil, 40_000)...))
	f.Add(uint16(1000), []byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, chunk uint16, data []byte) {
		const initial, maxFrame = 64, 1 << 20
		src := &meteredReader{data: data, chunk: max(int(chunk), 1)}
		b := &countingBudget{limit: 1 << 19}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		rd := NewReader(src, initial, maxFrame)
		rd.SetBudget(b)
		for i := 0; i <= len(data); i++ {
			_, err := rd.Next()
			if size := rd.BufferSize(); size > max(initial, 2*src.delivered) {
				t.Fatalf("buffer %d bytes after %d arrived", size, src.delivered)
			}
			if b.held < rd.BufferSize()-initial {
				t.Fatalf("buffer %d with %d budgeted", rd.BufferSize(), b.held)
			}
			if err != nil {
				break
			}
		}
		rd.Close()
		if b.held != 0 {
			t.Fatalf("%d bytes of budget held after Close", b.held)
		}
		runtime.ReadMemStats(&ms)
		if alloc := ms.TotalAlloc - before; alloc > uint64(4*len(data)+64<<10) {
			t.Fatalf("allocated %d bytes reading %d", alloc, len(data))
		}
	})
}

// NeedsInput is false once a whole frame, or a length Next refuses, is
// buffered.
func TestReaderNeedsInput(t *testing.T) {
	frame := AppendGet(nil, 1, 0, []byte("key"))
	huge := []byte{0x7f, 0xff, 0xff, 0xff}
	short := []byte{0, 0, 0, 2}
	for _, tc := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"nothing", nil, true},
		{"part of a length", frame[:3], true},
		{"part of a frame", frame[:len(frame)-1], true},
		{"a frame", frame, false},
		{"a frame and part of the next", append(bytes.Clone(frame), frame[:5]...), false},
		{"a length over the limit", huge, false},
		{"a length under the header", short, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tc.in), 64, 1<<20)
			if len(tc.in) > 0 {
				if err := r.Fill(); err != nil {
					t.Fatal(err)
				}
			}
			if got := r.NeedsInput(); got != tc.want {
				t.Fatalf("NeedsInput() = %v, want %v", got, tc.want)
			}
			if !tc.want && !r.HasFrame() {
				if _, err := r.Next(); err == nil {
					t.Fatal("Next accepted a length NeedsInput refused")
				}
			}
		})
	}
}
