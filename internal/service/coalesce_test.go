package service

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func TestHandEncodedCommandsMatchProtoMarshal(t *testing.T) {
	for _, c := range []struct {
		key, value []byte
		prev       bool
	}{{[]byte("k"), []byte("v"), false}, {[]byte("key"), nil, true}, {bytes.Repeat([]byte("x"), 300), bytes.Repeat([]byte("y"), 70000), true}} {
		want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&raftv1.Command{Op: &raftv1.Command_Put{Put: &raftv1.PutCommand{Key: c.key, Value: c.value, PrevKv: c.prev}}})
		if got := encodePut(c.key, c.value, c.prev); !bytes.Equal(got, want) {
			t.Fatalf("encodePut = %x, want %x", got, want)
		}
	}
	a, _ := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Put{Put: &raftv1.PutCommand{Key: []byte("a")}}})
	b, _ := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Delete{Delete: &raftv1.DeleteCommand{Key: []byte("b")}}})
	var multi raftv1.Command
	if err := proto.Unmarshal(encodeMulti([]pendingWrite{{data: a}, {data: b}}), &multi); err != nil {
		t.Fatal(err)
	}
	cmds := multi.GetMulti().GetCommands()
	if len(cmds) != 2 || string(cmds[0].GetPut().GetKey()) != "a" || string(cmds[1].GetDelete().GetKey()) != "b" {
		t.Fatalf("decoded multi = %v", &multi)
	}
}

// TestConcurrentWritesGetDistinctRevisions: coalesced writes are each
// applied at their own revision, as if proposed alone.
func TestConcurrentWritesGetDistinctRevisions(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	const writers = 200
	revs := make([]int64, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(fmt.Sprintf("k%03d", i)), Value: []byte("v")})
			if err != nil {
				t.Error(err)
				return
			}
			revs[i] = resp.GetHeader().GetRevision()
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i, r := range revs {
		if r < 1 || r > writers || seen[r] {
			t.Fatalf("write %d got revision %d (duplicate or out of range)", i, r)
		}
		seen[r] = true
		kv, ok := n.srv.Store().Get([]byte(fmt.Sprintf("k%03d", i)))
		if !ok || kv.ModRevision != r {
			t.Fatalf("key %d: stored mod revision %d, reply said %d", i, kv.ModRevision, r)
		}
	}
}
