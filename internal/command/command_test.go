package command

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

func TestHandEncodedCommandsMatchProtoMarshal(t *testing.T) {
	for _, c := range []struct {
		key, value []byte
		prev       bool
	}{{[]byte("k"), []byte("v"), false}, {[]byte("key"), nil, true}, {bytes.Repeat([]byte("x"), 300), bytes.Repeat([]byte("y"), 70000), true}} {
		want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&raftv1.Command{Op: &raftv1.Command_Put{Put: &raftv1.PutCommand{Key: c.key, Value: c.value, PrevKv: c.prev}}})
		if got := EncodePut(c.key, c.value, c.prev); !bytes.Equal(got, want) {
			t.Fatalf("EncodePut = %x, want %x", got, want)
		}
	}
	a, _ := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Put{Put: &raftv1.PutCommand{Key: []byte("a")}}})
	b, _ := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Delete{Delete: &raftv1.DeleteCommand{Key: []byte("b")}}})
	var multi raftv1.Command
	if err := proto.Unmarshal(EncodeMulti([][]byte{a, b}, ident), &multi); err != nil {
		t.Fatal(err)
	}
	cmds := multi.GetMulti().GetCommands()
	if len(cmds) != 2 || string(cmds[0].GetPut().GetKey()) != "a" || string(cmds[1].GetDelete().GetKey()) != "b" {
		t.Fatalf("decoded multi = %v", &multi)
	}
}

func ident(b []byte) []byte { return b }

// TestRoundTrip encodes every kind of command and decodes it back.
func TestRoundTrip(t *testing.T) {
	del, err := EncodeDelete([]byte("a"), []byte("c"), true)
	if err != nil {
		t.Fatal(err)
	}
	batch, _ := EncodeBatch([]BatchOp{{Key: []byte("p"), Value: []byte("1")}, {Delete: true, Key: []byte("q"), Value: []byte("ignored")}})
	txn := &engine.Txn{
		Reads:    []engine.ReadCheck{{Key: []byte("r"), ModRevision: 3}},
		Ranges:   []engine.RangeCheck{{Key: []byte("a"), End: []byte("b"), Count: 2, MaxModRevision: 5}},
		Compares: []engine.Compare{{Key: []byte("c"), Target: engine.CompareMod, Op: engine.CompareLess, Number: 9}},
		Success:  []engine.Op{{Type: engine.OpPut, Key: []byte("k"), Value: []byte("v"), PrevKV: true}, {Type: engine.OpRange, Key: []byte("a"), End: []byte{0}, Range: engine.RangeOptions{Limit: 4, KeysOnly: true}}},
		Failure:  []engine.Op{{Type: engine.OpDeleteRange, Key: []byte("x"), End: []byte("y")}, {Type: engine.OpDelete, Key: []byte("z")}},
	}
	txnData, _ := EncodeTxn(txn)
	evict, _ := EncodeEvict([]engine.EvictKey{{Key: []byte("e"), ModRevision: 7}})
	var d Decoder
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"put", EncodePut([]byte("k"), []byte("v"), true), fmt.Sprint(Decoded{Kind: KindOps, Ops: []engine.Op{{Type: engine.OpPut, Key: []byte("k"), Value: []byte("v"), PrevKV: true}}})},
		{"delete range", del, fmt.Sprint(Decoded{Kind: KindOps, Ops: []engine.Op{{Type: engine.OpDeleteRange, Key: []byte("a"), End: []byte("c"), PrevKV: true}}})},
		{"batch", batch, fmt.Sprint(Decoded{Kind: KindOps, Ops: []engine.Op{{Type: engine.OpPut, Key: []byte("p"), Value: []byte("1")}, {Type: engine.OpDelete, Key: []byte("q")}}})},
		{"txn", txnData, fmt.Sprint(Decoded{Kind: KindTxn, Txn: txn})},
		{"evict", evict, fmt.Sprint(Decoded{Kind: KindEvict, Evict: []engine.EvictKey{{Key: []byte("e"), ModRevision: 7}}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Decode(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if got.Txn != nil {
				if fmt.Sprint(*got.Txn) != fmt.Sprint(*txn) {
					t.Fatalf("decoded %v\nwant    %v", *got.Txn, *txn)
				}
				return
			}
			if fmt.Sprint(got) != tt.want {
				t.Fatalf("decoded %v\nwant    %v", got, tt.want)
			}
		})
	}
}

func TestDecodeRefusesInvalid(t *testing.T) {
	emptyKey := EncodePut(nil, []byte("v"), false)
	badRange, _ := EncodeDelete([]byte("b"), []byte("a"), false)
	var d Decoder
	for name, data := range map[string][]byte{
		"garbage":      {0xff, 0xff},
		"no operation": {},
		"empty key":    emptyKey,
		"end <= key":   badRange,
	} {
		if _, err := d.Decode(data); err == nil || !isInvalid(err) {
			t.Errorf("%s: err %v, want an invalid command", name, err)
		}
	}
	// In a multi, only the bad command fails.
	good := EncodePut([]byte("k"), nil, false)
	got, err := d.Decode(EncodeMulti([][]byte{good, emptyKey, badRange}, ident))
	if err != nil || got.Kind != KindMulti || got.Errs[0] != nil || got.Errs[1] == nil || got.Errs[2] == nil || got.Groups[0] == nil {
		t.Fatalf("multi: %v %v", got, err)
	}
}

func isInvalid(err error) bool { _, ok := err.(*invalidError); return ok }

// TestFastMultiMatchesProtoPath decodes the same coalesced entries through
// the message-free fast path and through the generated messages: the
// results must be identical.
func TestFastMultiMatchesProtoPath(t *testing.T) {
	var fast, slow Decoder
	for index := 1; index <= 50; index++ {
		var cmds [][]byte
		for j := 0; j < 1+index%7; j++ {
			k := []byte(fmt.Sprintf("k%d", (index*3+j)%17))
			v := []byte(fmt.Sprint(index, "-", j))
			if j == 2 {
				v = nil // empty values are legal
			}
			if j == 3 {
				k = nil // and must fail validation on both paths
			}
			cmds = append(cmds, EncodePut(k, v, j%2 == 0))
		}
		data := EncodeMulti(cmds, ident)
		got, ok := fast.decodeMultiPuts(data)
		if !ok {
			t.Fatalf("entry %d: fast path refused a plain multi of puts", index)
		}
		want, err := slow.decodeProto(data)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("entry %d: fast %v, proto %v", index, got, want)
		}
	}
}

func TestFastMultiRefusesWhatItDoesNotKnow(t *testing.T) {
	var d Decoder
	del, _ := EncodeDelete([]byte("a"), nil, false)
	plainPut := EncodePut([]byte("a"), []byte("1"), false)
	for name, data := range map[string][]byte{
		"plain put":         plainPut,
		"multi with delete": EncodeMulti([][]byte{plainPut, del}, ident),
		"trailing garbage":  append(EncodeMulti([][]byte{plainPut}, ident), 0x08, 0x01),
	} {
		if _, ok := d.decodeMultiPuts(data); ok {
			t.Fatalf("%s: the fast path took it", name)
		}
	}
}

// FuzzDecode: any bytes decode or fail without panicking, and whatever
// decodes as operations passes the engine's validation.
func FuzzDecode(f *testing.F) {
	f.Add(EncodePut([]byte("k"), []byte("v"), true))
	f.Add(EncodeMulti([][]byte{EncodePut([]byte("a"), nil, false)}, ident))
	del, _ := EncodeDelete([]byte("a"), []byte("b"), false)
	f.Add(del)
	var d Decoder
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := d.Decode(data)
		if err != nil {
			return
		}
		for _, op := range got.Ops {
			if engine.ValidateOp(op) != nil {
				t.Fatalf("decoded an invalid op %v", op)
			}
		}
		for i, g := range got.Groups {
			for _, op := range g {
				if engine.ValidateOp(op) != nil {
					t.Fatalf("group %d: decoded an invalid op %v", i, op)
				}
			}
		}
	})
}
