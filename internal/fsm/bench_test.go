package fsm

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// BenchmarkFSMApply measures applying committed entries to the state
// machine (decode the command, apply to the engine), without raft or I/O:
// a single put, and a coalesced entry of 64 puts as the write coalescer
// proposes under load.
func BenchmarkFSMApply(b *testing.B) {
	value := make([]byte, 256)
	put := func(i int) *raftv1.Command {
		return &raftv1.Command{Op: &raftv1.Command_Put{Put: &raftv1.PutCommand{Key: fmt.Appendf(nil, "key%06d", i%10_000), Value: value}}}
	}
	single, err := proto.Marshal(put(1))
	if err != nil {
		b.Fatal(err)
	}
	multi := &raftv1.MultiCommand{}
	for i := range 64 {
		multi.Commands = append(multi.Commands, put(i))
	}
	coalesced, err := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Multi{Multi: multi}})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		data []byte
		puts int
	}{{"put", single, 1}, {"multi64", coalesced, 64}} {
		b.Run(bc.name, func(b *testing.B) {
			f := New(engine.New(), nil, nil)
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			var index uint64
			for b.Loop() {
				index++
				if r := f.Apply(index, bc.data).(Result); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
			b.ReportMetric(float64(b.N*bc.puts)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}
