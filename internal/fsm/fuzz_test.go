package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// FuzzApplyTxnCommand feeds arbitrary entries through the state machine's
// decoder into a store: it must never panic, and an entry it refuses must
// leave the store untouched.
func FuzzApplyTxnCommand(f *testing.F) {
	seed := &raftv1.Command{Op: &raftv1.Command_Txn{Txn: &raftv1.TxnCommand{
		Reads:    []*raftv1.ReadCheck{{Key: []byte("a"), ModRevision: 1}},
		Ranges:   []*raftv1.RangeCheck{{Key: []byte("a"), RangeEnd: []byte("c"), Count: 2, MaxModRevision: 1}},
		Compares: []*raftv1.TxnCompare{{Key: []byte("a"), Target: raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_VALUE, Operator: raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_EQUAL, Value: []byte("1")}},
		Success:  []*raftv1.TxnOp{{Type: raftv1.TxnOpType_TXN_OP_TYPE_PUT, Key: []byte("a"), Value: []byte("2")}, {Type: raftv1.TxnOpType_TXN_OP_TYPE_RANGE, Key: []byte("a"), RangeEnd: []byte{0}}},
		Failure:  []*raftv1.TxnOp{{Type: raftv1.TxnOpType_TXN_OP_TYPE_DELETE, Key: []byte("a"), RangeEnd: []byte("z")}},
	}}}
	data, _ := proto.Marshal(seed)
	f.Add(data)
	f.Add([]byte{0x22, 0x02, 0x22, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		store := engine.New()
		store.Apply(1, []engine.Op{{Type: engine.OpPut, Key: []byte("a"), Value: []byte("1")}, {Type: engine.OpPut, Key: []byte("b"), Value: []byte("1")}})
		before := store.Hash()
		v := New(store, nil, nil).Apply(2, data)
		if store.AppliedIndex() != 2 {
			t.Fatalf("applied index %d after entry 2", store.AppliedIndex())
		}
		r := v.(Result)
		refused := r.Err != nil || (r.Txn != nil && r.Txn.Conflict != nil)
		if refused && store.Hash() != before {
			t.Fatal("a refused entry changed the store")
		}
	})
}
