package service

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/wire"
)

// BenchmarkBinaryDispatch measures the binary adapter's own cost per request,
// codec and dispatch: decode the frame, validate, read the store (or hand
// the write to core) and encode the reply into the connection's buffer. No
// socket: frames come from a prepared batch of 256 and replies are dropped.
// A linearizable batch shares one ReadIndex (its goroutine and raft's round
// are amortised over the batch). Put and Delete include core's coalescer
// and the raft round trip of each batch, which do allocate.
//
//	go test -run='^$' -bench=BinaryDispatch -benchmem ./internal/service/
func BenchmarkBinaryDispatch(b *testing.B) {
	n := benchNode(b, false)
	value := make([]byte, 256)
	preload(b, n, value)
	const batch = 256
	for _, op := range []string{"GetSerializable", "GetLinearizable", "Put", "Delete"} {
		b.Run(op, func(b *testing.B) {
			var frames []byte
			for i := range batch {
				key := fmt.Appendf(nil, "key-%06d", i)
				switch op {
				case "GetSerializable":
					frames = wire.AppendGet(frames, uint64(i+1), wire.FlagSerializable, key)
				case "GetLinearizable":
					frames = wire.AppendGet(frames, uint64(i+1), 0, key)
				case "Put":
					frames = wire.AppendPut(frames, uint64(i+1), 0, key, value)
				case "Delete":
					frames = wire.AppendRequest(frames, &wire.Request{Op: wire.OpDelete, ID: uint64(i + 1), Key: key})
				}
			}
			c := newBinaryConn(n.srv.binary, discardConn{})
			c.slots = make(chan struct{}, batch+1)
			rd := wire.NewReader(&loopReader{data: frames}, 64<<10, wire.DefaultMaxFrameSize)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f, err := rd.Next()
				if err != nil {
					b.Fatal(err)
				}
				c.slots <- struct{}{}
				if !c.handle(f) {
					b.Fatal("connection closed")
				}
				if i%batch == batch-1 {
					c.dispatchReads()
					c.b.wg.Wait()
					c.writes.Wait()
					c.mu.Lock()
					c.out = c.out[:0]
					c.mu.Unlock()
				}
			}
			b.StopTimer()
			c.dispatchReads()
			c.b.wg.Wait()
			c.writes.Wait()
		})
	}
}

// loopReader returns data over and over.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// discardConn is a net.Conn that drops writes.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
