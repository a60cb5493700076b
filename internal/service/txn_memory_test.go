package service

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// TestTxnBuffersCountAgainstMaxMemory opens interactive transactions on a
// noeviction node until what they buffer reaches max-memory: the next
// buffered put, and a plain put, fail with RESOURCE_EXHAUSTED naming
// max-memory, and a rollback, a commit and expiry each give the room back.
func TestTxnBuffersCountAgainstMaxMemory(t *testing.T) {
	const (
		limit = 1 << 20
		value = 200_000
		fit   = limit / value // 5 transactions of one put fit, 6 do not
	)
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.MaxMemory = limit
		c.EvictionPolicy = EvictNone
		c.TxnIdleTimeout = time.Minute
	})
	var mu sync.Mutex
	now := time.Now()
	n.srv.core.SetTxnClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	c := txnClient(n)
	ctx := ctxT(t)
	val := make([]byte, value)
	put := func(id, key string) error {
		_, err := c.Put(ctx, &kvdbv1.TxnServicePutRequest{TxnId: id, Key: []byte(key), Value: val})
		return err
	}
	fill := func() []string {
		t.Helper()
		var ids []string
		for i := range fit {
			id := begin(t, c, "")
			if err := put(id, fmt.Sprintf("k%d", i)); err != nil {
				t.Fatalf("transaction %d of %d: %v", i, fit, err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	full := func(id string) {
		t.Helper()
		wantCode(t, put(id, "over"), codes.ResourceExhausted, "max-memory")
	}

	ids := fill()
	over := begin(t, c, "over")
	full(over)
	// Writes share the limit with the buffers.
	_, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("plain"), Value: val})
	wantCode(t, err, codes.ResourceExhausted, "memory limit")

	if _, err := c.Rollback(ctx, &kvdbv1.RollbackRequest{TxnId: ids[0]}); err != nil {
		t.Fatal(err)
	}
	if err := put(over, "over"); err != nil {
		t.Fatalf("put after a rollback gave room back: %v", err)
	}
	full(begin(t, c, ""))

	// A transaction that deletes what it put commits nothing to the store.
	if _, err := c.Delete(ctx, &kvdbv1.TxnServiceDeleteRequest{TxnId: ids[1], Key: []byte("k1")}); err != nil {
		t.Fatal(err)
	}
	if err := commit(c, ids[1]); err != nil {
		t.Fatal(err)
	}
	after := begin(t, c, "")
	if err := put(after, "after"); err != nil {
		t.Fatalf("put after a commit gave room back: %v", err)
	}
	full(begin(t, c, ""))

	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	n.srv.core.SweepTxns()
	if a := n.srv.Stats().GetTransactions(); a.GetActive() != 0 {
		t.Fatalf("after expiry: %d transactions open", a.GetActive())
	}
	fill()
	if got := n.srv.Store().MemoryUsage(); got != 0 {
		t.Errorf("memory_usage %d: a transaction's buffer reached the store", got)
	}
}

// TestTxnBuffersMakeRoomByEviction: under allkeys-lru what open
// transactions buffer makes the leader evict stored keys, as a write does,
// so the stored data and the buffers stay under max-memory together.
func TestTxnBuffersMakeRoomByEviction(t *testing.T) {
	const (
		limit = 1 << 20
		value = 100_000
	)
	n := startNode(t, t.TempDir(), func(c *Config) { c.MaxMemory = limit })
	c := txnClient(n)
	ctx := ctxT(t)
	val := make([]byte, value)
	for i := range 8 {
		if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: fmt.Appendf(nil, "stored/%d", i), Value: val}); err != nil {
			t.Fatal(err)
		}
	}
	const txns = 3
	for i := range txns {
		id := begin(t, c, "")
		var err error
		for range 100 { // eviction may be behind: retry, boundedly
			_, err = c.Put(ctx, &kvdbv1.TxnServicePutRequest{TxnId: id, Key: []byte("k"), Value: val})
			if status.Code(err) != codes.ResourceExhausted {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	st := n.srv.Store()
	if st.EvictedKeys() == 0 {
		t.Errorf("no key evicted with %d stored bytes and %d buffered of %d", st.MemoryUsage(), txns*value, limit)
	}
	if used := st.MemoryUsage(); used+txns*value > limit {
		t.Errorf("memory_usage %d plus %d buffered bytes passes max-memory %d", used, txns*value, limit)
	}
}
