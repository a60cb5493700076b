package robustness

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// TestRangeResponsesAreBounded: 300 values of 1 MiB, read with ranges that
// ask for everything. Every answer stays within -max-response-bytes (4 MiB
// by default) with more=true and the exact count, six such ranges at once
// do not grow the node's memory by more than 64 MiB, and paging with the
// last key reads all 300.
func TestRangeResponsesAreBounded(t *testing.T) {
	const n, size, budget = 300, 1 << 20, 4 << 20
	node := startConnNode(t)
	conn, err := grpc.NewClient(node.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv := kvdbv1.NewKVServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	value := bytes.Repeat([]byte("v"), size)
	for i := range n {
		if _, err := kv.Put(ctx, &kvdbv1.PutRequest{Key: fmt.Appendf(nil, "big/%03d", i), Value: value}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	before := node.rss(t)
	check := func(resp *kvdbv1.RangeResponse) {
		t.Helper()
		if got := proto.Size(resp); got > budget+64<<10 || len(resp.GetKvs()) == 0 || !resp.GetMore() || resp.GetCount() != n {
			t.Fatalf("range answer of %d bytes with %d keys, more=%v count=%d; want at most %d bytes, more, count %d",
				got, len(resp.GetKvs()), resp.GetMore(), resp.GetCount(), budget, n)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := kv.Range(ctx, &kvdbv1.RangeRequest{Key: []byte("big/"), Prefix: true})
			if err != nil {
				errs <- err
				return
			}
			check(resp)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	after := node.peakRSS(t, time.Second)
	t.Logf("RSS with 300 MiB stored: %s before six unbounded ranges, %s after", mib(before), mib(after))
	if grew := after - before; grew > 64<<20 {
		t.Fatalf("six unbounded ranges grew RSS by %s", mib(grew))
	}

	// The binary protocol answers within the same budget.
	c, err := kvclient.New(ctx, kvclient.Options{Endpoints: []string{node.addr}, Protocol: kvclient.ProtocolBinary, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Range(ctx, []byte("big/"), kvclient.RangeOptions{End: []byte("big0")})
	if err != nil {
		t.Fatal(err)
	}
	if bytesOf := len(r.KVs) * (size + 7); bytesOf > budget+size || !r.More || r.Count != n || len(r.KVs) == 0 {
		t.Fatalf("binary range: %d keys (%d bytes), more=%v count=%d", len(r.KVs), bytesOf, r.More, r.Count)
	}

	// Paging after the last key returned reads every key exactly once.
	seen := 0
	for key := []byte("big/"); ; {
		resp, err := kv.Range(ctx, &kvdbv1.RangeRequest{Key: key, RangeEnd: []byte("big0"), KeysOnly: seen%2 == 1})
		if err != nil {
			t.Fatal(err)
		}
		seen += len(resp.GetKvs())
		if !resp.GetMore() {
			break
		}
		key = append(bytes.Clone(resp.GetKvs()[len(resp.GetKvs())-1].GetKey()), 0)
		if seen > n {
			t.Fatalf("paging saw %d keys", seen)
		}
	}
	if seen != n {
		t.Fatalf("paging read %d keys, want %d", seen, n)
	}

	// kvdbctl pages by itself: one command lists all 300 (a key line and a
	// value line each).
	out, err := exec.CommandContext(ctx, stCtlBin(t), "--address", node.addr, "range", "big/").Output()
	if err != nil {
		t.Fatalf("kvdbctl range: %v", err)
	}
	if lines := bytes.Count(out, []byte("\n")); lines != 2*n || len(out) < n*size {
		t.Fatalf("kvdbctl range printed %d lines (%d bytes), want %d keys with their values", lines, len(out), n)
	}
}
