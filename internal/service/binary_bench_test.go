package service

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/wire"
)

// The binary-protocol benchmarks drive one node with raw pipelined
// connections: conns connections, each keeping depth requests in flight,
// 256-byte values, -sync-writes=false. They report ops/s and p50/p99 latency
// of each request. Run them with
//
//	go test -run='^$' -bench=Binary -benchtime=400000x -count=3 ./internal/service/
//
// Sub-benchmark names say the shape: Get/c50/d16 is 50 connections with 16
// requests in flight on each.
//
// With KVDB_BENCH_BINARY_ADDR set to a running node's address, the same
// load loop drives that node instead of one in this process: the load
// generator is then a process of its own, as kvdbctl bench is, which shows
// what that placement costs on the machine.
var benchBinaryAddr = os.Getenv("KVDB_BENCH_BINARY_ADDR")

func BenchmarkBinary(b *testing.B) {
	shapes := []struct{ conns, depth int }{{1, 1}, {50, 1}, {50, 16}}
	for _, op := range []string{"Get", "GetSerializable", "Put"} {
		for _, sh := range shapes {
			b.Run(fmt.Sprintf("%s/c%d/d%d", op, sh.conns, sh.depth), func(b *testing.B) {
				value := make([]byte, 256)
				addr := benchBinaryAddr
				switch {
				case addr == "":
					n := benchNode(b, false)
					if op != "Put" {
						preload(b, n, value)
					}
					addr = n.addr
				case op != "Put":
					preloadBinary(b, addr, value)
				}
				runBinaryLoad(b, addr, sh.conns, sh.depth, func(dst []byte, id uint64, i int) []byte {
					key := fmt.Appendf(nil, "key-%06d", i%10_000)
					switch op {
					case "Get":
						return wire.AppendGet(dst, id, 0, key)
					case "GetSerializable":
						return wire.AppendGet(dst, id, wire.FlagSerializable, key)
					}
					return wire.AppendPut(dst, id, 0, key, value)
				})
			})
		}
	}
}

// preloadBinary writes the benchmarks' 10,000 keys to the node at addr in
// binary BATCH requests of 1,000 puts.
func preloadBinary(b *testing.B, addr string, value []byte) {
	b.Helper()
	c, rd := dialBinaryBench(b, addr)
	for i := 0; i < 10_000; i += 1000 {
		req := wire.Request{Op: wire.OpBatch, ID: uint64(i + 1)}
		for j := i; j < i+1000; j++ {
			req.Ops = append(req.Ops, wire.BatchOp{Type: wire.BatchPut, Key: fmt.Appendf(nil, "key-%06d", j), Value: value})
		}
		if _, err := c.Write(wire.AppendRequest(nil, &req)); err != nil {
			b.Fatal(err)
		}
		f, err := rd.Next()
		if err != nil {
			b.Fatal(err)
		}
		var resp wire.Response
		if err := wire.DecodeResponse(f, &resp); err != nil || resp.Status != wire.StatusOK {
			b.Fatalf("preload batch: %v %s %s", err, resp.Status, resp.Payload)
		}
	}
}

// dialBinaryBench opens a binary-protocol connection, closed when the
// benchmark ends, past its hello.
func dialBinaryBench(b *testing.B, addr string) (net.Conn, *wire.Reader) {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	c.Write(wire.AppendClientHello(nil, wire.Version))
	var hello [wire.ServerHelloSize]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		b.Fatal(err)
	}
	return c, wire.NewReader(c, 64<<10, wire.MaxResponseFrameSize)
}

// runBinaryLoad splits b.N requests over conns connections, each keeping up
// to depth requests in flight (a closed loop per connection: a new request
// leaves when a reply arrives).
func runBinaryLoad(b *testing.B, addr string, conns, depth int, encode func([]byte, uint64, int) []byte) {
	b.Helper()
	type conn struct {
		c  net.Conn
		rd *wire.Reader
	}
	cs := make([]conn, conns)
	for i := range cs {
		c, rd := dialBinaryBench(b, addr)
		cs[i] = conn{c: c, rd: rd}
	}
	var next atomic.Int64
	lat := make([][]time.Duration, conns)
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cs[g]
			_ = c.c.SetDeadline(time.Now().Add(5 * time.Minute))
			sent := make(map[uint64]time.Time, depth)
			var buf []byte
			var resp wire.Response
			var id uint64
			inflight := 0
			for {
				buf = buf[:0]
				for inflight < depth {
					i := int(next.Add(1))
					if i > b.N {
						break
					}
					id++
					buf = encode(buf, id, i)
					sent[id] = time.Now()
					inflight++
				}
				if len(buf) > 0 {
					if _, err := c.c.Write(buf); err != nil {
						failed.Store(err)
						return
					}
				}
				if inflight == 0 {
					return
				}
				// Read every reply already here, at least one.
				for first := true; first || c.rd.HasFrame(); first = false {
					f, err := c.rd.Next()
					if err != nil {
						failed.Store(err)
						return
					}
					if err := wire.DecodeResponse(f, &resp); err != nil || resp.Status != wire.StatusOK {
						failed.Store(fmt.Errorf("reply %d: %v %s %s", resp.ID, err, resp.Status, resp.Payload))
						return
					}
					lat[g] = append(lat[g], time.Since(sent[resp.ID]))
					delete(sent, resp.ID)
					inflight--
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	reportLatencies(b, lat, elapsed)
}
