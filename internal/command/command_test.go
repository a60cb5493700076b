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
	for i, ops := range [][]BatchOp{
		nil,
		{{Key: []byte("p"), Value: []byte("1")}},
		{{Delete: true, Key: []byte("q"), Value: []byte("a delete's value is not encoded")}, {Key: []byte("empty value")}, {}},
		{{Key: bytes.Repeat([]byte("k"), 200), Value: bytes.Repeat([]byte("v"), 70000)}, {Delete: true}},
		{{Delete: true, Key: []byte("d"), PrevKV: true}, {Key: []byte("a put's prev_kv is not encoded"), PrevKV: true}},
	} {
		cmd := &raftv1.BatchCommand{}
		for _, o := range ops {
			op := &raftv1.BatchCommandOp{Delete: o.Delete, Key: o.Key, PrevKv: o.Delete && o.PrevKV}
			if !o.Delete {
				op.Value = o.Value
			}
			cmd.Ops = append(cmd.Ops, op)
		}
		now := int64(i) * 1_700_000_000_123 // 0 first: the field left out
		cmd.NowMs = now
		want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&raftv1.Command{Op: &raftv1.Command_Batch{Batch: cmd}})
		if got, err := EncodeBatch(ops, now); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("EncodeBatch(%d ops, %d) = %x, %v, want %x", len(ops), now, got, err, want)
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
	// AppendMulti leaves what is before it alone, whatever room it has.
	for _, room := range []int{0, 3, 1000} {
		prefix := append(make([]byte, 0, 8+room), "12345678"...)
		got := AppendMulti(prefix, [][]byte{a, b}, ident)
		if string(got[:8]) != "12345678" || !bytes.Equal(got[8:], EncodeMulti([][]byte{a, b}, ident)) {
			t.Fatalf("AppendMulti with %d bytes of room = %x", room, got)
		}
	}
}

func ident(b []byte) []byte { return b }

// TestRoundTrip encodes every kind of command and decodes it back.
func TestRoundTrip(t *testing.T) {
	del, err := EncodeDelete([]byte("a"), []byte("c"), true, 0)
	if err != nil {
		t.Fatal(err)
	}
	batch, _ := EncodeBatch([]BatchOp{{Key: []byte("p"), Value: []byte("1")}, {Delete: true, Key: []byte("q"), Value: []byte("ignored")}, {Delete: true, Key: []byte("r"), PrevKV: true}}, 0)
	txn := &engine.Txn{
		Reads:    []engine.ReadCheck{{Key: []byte("r"), ModRevision: 3}},
		Ranges:   []engine.RangeCheck{{Key: []byte("a"), End: []byte("b"), Count: 2, MaxModRevision: 5}},
		Compares: []engine.Compare{{Key: []byte("c"), Target: engine.CompareMod, Op: engine.CompareLess, Number: 9}},
		Success:  []engine.Op{{Type: engine.OpPut, Key: []byte("k"), Value: []byte("v"), PrevKV: true, Lease: 77}, {Type: engine.OpRange, Key: []byte("a"), End: []byte{0}, Range: engine.RangeOptions{Limit: 4, KeysOnly: true}}},
		Failure:  []engine.Op{{Type: engine.OpDeleteRange, Key: []byte("x"), End: []byte("y")}, {Type: engine.OpDelete, Key: []byte("z")}},
		Now:      1700000000000,
	}
	txnData, _ := EncodeTxn(txn)
	delNow, _ := EncodeDelete([]byte("a"), nil, false, 1234)
	batchNow, _ := EncodeBatch([]BatchOp{{Key: []byte("p"), Value: []byte("1")}, {Delete: true, Key: []byte("q")}}, 1234)
	evict, _ := EncodeEvict([]engine.EvictKey{{Key: []byte("e"), ModRevision: 7}})
	var d Decoder
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"put", EncodePut([]byte("k"), []byte("v"), true), fmt.Sprint(Decoded{Kind: KindOps, Ops: []engine.Op{{Type: engine.OpPut, Key: []byte("k"), Value: []byte("v"), PrevKV: true}}})},
		{"delete range", del, fmt.Sprint(Decoded{Kind: KindOps, Ops: []engine.Op{{Type: engine.OpDeleteRange, Key: []byte("a"), End: []byte("c"), PrevKV: true}}})},
		{"batch", batch, fmt.Sprint(Decoded{Kind: KindOps, Ops: []engine.Op{{Type: engine.OpPut, Key: []byte("p"), Value: []byte("1")}, {Type: engine.OpDelete, Key: []byte("q")}, {Type: engine.OpDelete, Key: []byte("r"), PrevKV: true}}})},
		{"put with the clock", EncodePutMeta([]byte("k"), []byte("v"), false, 0, 0, 1234), fmt.Sprint(Decoded{Kind: KindOps, Ops: []engine.Op{{Type: engine.OpPut, Key: []byte("k"), Value: []byte("v"), Now: 1234}}})},
		{"delete with the clock", delNow, fmt.Sprint(Decoded{Kind: KindOps, Ops: []engine.Op{{Type: engine.OpDelete, Key: []byte("a"), Now: 1234}}})},
		{"batch with the clock", batchNow, fmt.Sprint(Decoded{Kind: KindOps, Ops: []engine.Op{{Type: engine.OpPut, Key: []byte("p"), Value: []byte("1"), Now: 1234}, {Type: engine.OpDelete, Key: []byte("q"), Now: 1234}}})},
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
	badRange, _ := EncodeDelete([]byte("b"), []byte("a"), false, 0)
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

// TestFastPathMatchesProtoPath decodes the same entries (puts, deletes,
// batches, and coalesced multis of them) through the message-free fast
// path and through the generated messages: the results must be identical.
func TestFastPathMatchesProtoPath(t *testing.T) {
	var fast, slow Decoder
	mustEnc := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for index := 1; index <= 80; index++ {
		var cmds [][]byte
		for j := 0; j < 1+index%7; j++ {
			k := []byte(fmt.Sprintf("k%d", (index*3+j)%17))
			v := []byte(fmt.Sprint(index, "-", j))
			if j == 2 {
				v = nil // empty values are legal
			}
			if j == 3 && index%2 == 0 {
				k = nil // and must fail validation on both paths
			}
			switch (index + j) % 4 {
			case 0, 1:
				cmds = append(cmds, EncodePut(k, v, j%2 == 0))
			case 2:
				var end []byte
				if j%2 == 1 {
					end = append(append([]byte(nil), k...), 'z')
				}
				cmds = append(cmds, mustEnc(EncodeDelete(k, end, j%3 == 0, 0)))
			case 3:
				ops := []BatchOp{{Key: k, Value: v}, {Key: []byte("b"), Delete: true}, {Key: []byte("c"), Value: []byte("3")}}
				cmds = append(cmds, mustEnc(EncodeBatch(ops[:1+index%3], 0)))
			}
		}
		if index%3 != 0 {
			// Commands checked with authentication on carry the auth
			// revision, some of them at least.
			for j := range cmds {
				if j%2 == index%2 {
					cmds[j] = StampAuthRevision(cmds[j], uint64(index*10+j))
				}
			}
		}
		entries := [][]byte{EncodeMulti(cmds, ident)}
		if index%5 == 0 {
			entries = append(entries, cmds...) // each alone, as a lone write is proposed
		}
		for _, data := range entries {
			want, werr := slow.decodeProto(data)
			got, ok := fast.decodeFast(data)
			if !ok {
				if werr == nil && want.Kind == KindMulti {
					t.Fatalf("entry %d: fast path refused a multi of puts, deletes and batches", index)
				}
				continue // a lone invalid write: the generic path words the error
			}
			if werr != nil {
				t.Fatalf("entry %d: fast path decoded what the generic path refuses: %v", index, werr)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("entry %d: fast %v, proto %v", index, got, want)
			}
		}
	}
}

func TestFastPathRefusesWhatItDoesNotKnow(t *testing.T) {
	var d Decoder
	plainPut := EncodePut([]byte("a"), []byte("1"), false)
	txn, err := EncodeTxn(&engine.Txn{Success: []engine.Op{{Type: engine.OpPut, Key: []byte("a")}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"txn":              txn,
		"multi with txn":   EncodeMulti([][]byte{plainPut, txn}, ident),
		"nested multi":     EncodeMulti([][]byte{EncodeMulti([][]byte{plainPut}, ident)}, ident),
		"trailing garbage": append(EncodeMulti([][]byte{plainPut}, ident), 0x08, 0x01),
		"repeated key":     append(append([]byte(nil), plainPut...), 0x0a, 0x01, 'b'),
	} {
		if _, ok := d.decodeFast(data); ok {
			t.Fatalf("%s: the fast path took it", name)
		}
	}
}

// FuzzDecode: any bytes decode or fail without panicking, and whatever
// decodes as operations passes the engine's validation.
func FuzzDecode(f *testing.F) {
	f.Add(EncodePut([]byte("k"), []byte("v"), true))
	f.Add(EncodeMulti([][]byte{EncodePut([]byte("a"), nil, false)}, ident))
	del, _ := EncodeDelete([]byte("a"), []byte("b"), false, 0)
	f.Add(del)
	batch, _ := EncodeBatch([]BatchOp{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Delete: true}}, 0)
	f.Add(batch)
	f.Add(EncodeMulti([][]byte{batch, del, EncodePut([]byte("c"), []byte("3"), true)}, ident))
	f.Add(StampAuthRevision(EncodePut([]byte("k"), []byte("v"), false), 7))
	f.Add(EncodeMulti([][]byte{StampAuthRevision(del, 3), EncodePut([]byte("c"), []byte("3"), true)}, ident))
	var d, fastD, slow Decoder
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := d.Decode(data)
		if err != nil {
			return
		}
		// Whatever the fast path takes, the generic path decodes the same.
		if fast, ok := fastD.decodeFast(data); ok {
			want, err := slow.decodeProto(data)
			if err != nil {
				t.Fatalf("fast path decoded what the generic path refuses: %v", err)
			}
			if fmt.Sprint(fast) != fmt.Sprint(want) {
				t.Fatalf("fast %v, proto %v", fast, want)
			}
			got = fast
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

// TestEncodeExpireMatchesProto: the hand-written expire encoding is the
// generated one's, and both decode paths read it alike.
func TestEncodeExpireMatchesProto(t *testing.T) {
	for _, keys := range [][]engine.EvictKey{
		nil,
		{{Key: []byte("a"), ModRevision: 1}},
		{{Key: []byte("k1"), ModRevision: 1 << 40}, {Key: bytes.Repeat([]byte("x"), 300), ModRevision: 0}, {Key: []byte("z"), ModRevision: 7}},
	} {
		got, err := EncodeExpire(keys)
		if err != nil {
			t.Fatal(err)
		}
		cmd := &raftv1.ExpireCommand{}
		for _, k := range keys {
			cmd.Keys = append(cmd.Keys, &raftv1.EvictKey{Key: k.Key, ModRevision: k.ModRevision})
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&raftv1.Command{Op: &raftv1.Command_Expire{Expire: cmd}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("EncodeExpire(%v) = %x, proto %x", keys, got, want)
		}
		var d Decoder
		fast, err := d.Decode(got)
		if err != nil || fast.Kind != KindExpire || len(fast.Evict) != len(keys) {
			t.Fatalf("decode: %+v %v", fast, err)
		}
		slow, err := d.decodeProto(got)
		if err != nil || len(slow.Evict) != len(keys) {
			t.Fatalf("proto decode: %+v %v", slow, err)
		}
		for i := range keys {
			if !bytes.Equal(fast.Evict[i].Key, keys[i].Key) || fast.Evict[i].ModRevision != keys[i].ModRevision ||
				!bytes.Equal(slow.Evict[i].Key, keys[i].Key) || slow.Evict[i].ModRevision != keys[i].ModRevision {
				t.Fatalf("key %d: fast %+v slow %+v want %+v", i, fast.Evict[i], slow.Evict[i], keys[i])
			}
		}
	}
}

// TestAuthRevisionRoundTrip: the auth revision a command is stamped with
// comes back from both decode paths, for a lone command and for each
// command of a multi; an unstamped command reads 0.
func TestAuthRevisionRoundTrip(t *testing.T) {
	put := EncodePut([]byte("a"), []byte("1"), false)
	del, err := EncodeDelete([]byte("b"), nil, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	txn, err := EncodeTxn(&engine.Txn{Success: []engine.Op{{Type: engine.OpPut, Key: []byte("a")}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := StampAuthRevision(put, 0); !bytes.Equal(got, put) {
		t.Fatalf("a zero stamp changed the command")
	}
	for _, tc := range []struct {
		name string
		data []byte
		rev  uint64
	}{
		{"put", StampAuthRevision(put, 42), 42},
		{"unstamped put", put, 0},
		{"delete", StampAuthRevision(del, 1<<40), 1 << 40},
		{"txn", StampAuthRevision(txn, 9), 9},
	} {
		var d Decoder
		got, err := d.Decode(tc.data)
		if err != nil || got.AuthRevision != tc.rev {
			t.Errorf("%s: Decode = rev %d, %v; want %d", tc.name, got.AuthRevision, err, tc.rev)
		}
		want, err := d.decodeProto(tc.data)
		if err != nil || want.AuthRevision != tc.rev {
			t.Errorf("%s: decodeProto = rev %d, %v; want %d", tc.name, want.AuthRevision, err, tc.rev)
		}
	}
	multi := EncodeMulti([][]byte{StampAuthRevision(put, 5), del, StampAuthRevision(del, 6)}, ident)
	for name, decode := range map[string]func(*Decoder, []byte) (Decoded, error){
		"fast":  func(d *Decoder, b []byte) (Decoded, error) { out, _ := d.decodeFast(b); return out, nil },
		"proto": (*Decoder).decodeProto,
	} {
		var d Decoder
		got, err := decode(&d, multi)
		if err != nil || fmt.Sprint(got.AuthRevisions) != "[5 0 6]" {
			t.Errorf("%s: multi revisions %v, %v; want [5 0 6]", name, got.AuthRevisions, err)
		}
	}
	var d Decoder
	got, err := d.Decode(EncodeMulti([][]byte{put, del}, ident))
	if err != nil || got.AuthRevisions != nil {
		t.Errorf("unstamped multi: revisions %v, %v; want nil", got.AuthRevisions, err)
	}
}
