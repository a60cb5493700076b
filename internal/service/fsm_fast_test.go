package service

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// TestFastMultiMatchesProtoPath applies the same coalesced entries through
// the message-free fast path and through protobuf decoding: the stores and
// every per-write result must be identical.
func TestFastMultiMatchesProtoPath(t *testing.T) {
	fast, slow := &fsm{store: engine.New()}, &fsm{store: engine.New()}
	for index := uint64(1); index <= 50; index++ {
		var batch []pendingWrite
		for j := 0; j < 1+int(index)%7; j++ {
			k := []byte(fmt.Sprintf("k%d", (int(index)*3+j)%17))
			v := []byte(fmt.Sprint(index, "-", j))
			if j == 2 {
				v = nil // empty values are legal
			}
			batch = append(batch, pendingWrite{data: encodePut(k, v, j%2 == 0)})
		}
		data := encodeMulti(batch)
		got, ok := fast.fastApplyMulti(index, data)
		if !ok {
			t.Fatalf("entry %d: fast path refused a plain multi of puts", index)
		}
		var cmd raftv1.Command
		if err := proto.Unmarshal(data, &cmd); err != nil {
			t.Fatal(err)
		}
		want := slow.applyMulti(index, cmd.GetMulti().GetCommands())
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("entry %d: fast %v, proto %v", index, got, want)
		}
	}
	if fast.store.Hash() != slow.store.Hash() || fast.store.Revision() != slow.store.Revision() {
		t.Fatal("stores differ after the same entries")
	}
}

func TestFastMultiRefusesWhatItDoesNotKnow(t *testing.T) {
	f := &fsm{store: engine.New()}
	del, _ := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Delete{Delete: &raftv1.DeleteCommand{Key: []byte("a")}}})
	plainPut := encodePut([]byte("a"), []byte("1"), false)
	for name, data := range map[string][]byte{
		"plain put":         plainPut,
		"multi with delete": encodeMulti([]pendingWrite{{data: plainPut}, {data: del}}),
		"trailing garbage":  append(encodeMulti([]pendingWrite{{data: plainPut}}), 0x08, 0x01),
		"empty key put":     encodeMulti([]pendingWrite{{data: encodePut(nil, []byte("v"), false)}}),
	} {
		_, ok := f.fastApplyMulti(1, data)
		if name == "empty key put" {
			// Recognised, but the write itself must fail validation.
			res, _ := f.fastApplyMulti(1, data)
			if !ok || res.(multiResult)[0].err == nil {
				t.Fatalf("%s: %v %v", name, ok, res)
			}
			continue
		}
		if ok {
			t.Fatalf("%s: the fast path took it", name)
		}
	}
}
