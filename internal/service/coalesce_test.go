package service

import (
	"fmt"
	"sync"
	"testing"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

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
