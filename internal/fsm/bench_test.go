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
// a single put, a coalesced entry of 64 puts as the write coalescer
// proposes under load, a 100-key batch, and a coalesced entry mixing puts,
// deletes and batches. puts/s counts every write op.
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
	batch := &raftv1.BatchCommand{}
	for i := range 100 {
		batch.Ops = append(batch.Ops, &raftv1.BatchCommandOp{Key: fmt.Appendf(nil, "key%06d", i), Value: value})
	}
	batched, err := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Batch{Batch: batch}})
	if err != nil {
		b.Fatal(err)
	}
	// What the coalescer proposes under a mixed load: puts, deletes and
	// 10-key batches, 64 writes in one entry.
	mixed := &raftv1.MultiCommand{}
	small := &raftv1.BatchCommand{Ops: batch.Ops[:10]}
	for i := range 64 {
		switch i % 4 {
		case 0, 1:
			mixed.Commands = append(mixed.Commands, put(i))
		case 2:
			mixed.Commands = append(mixed.Commands, &raftv1.Command{Op: &raftv1.Command_Delete{Delete: &raftv1.DeleteCommand{Key: fmt.Appendf(nil, "key%06d", i)}}})
		case 3:
			mixed.Commands = append(mixed.Commands, &raftv1.Command{Op: &raftv1.Command_Batch{Batch: small}})
		}
	}
	mixedData, err := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Multi{Multi: mixed}})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		data []byte
		puts int
	}{{"put", single, 1}, {"multi64", coalesced, 64}, {"batch100", batched, 100}, {"multi64mixed", mixedData, 32 + 16 + 16*10}} {
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
