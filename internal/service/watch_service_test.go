package service

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/watch"
)

func createReq(c *kvdbv1.WatchCreateRequest) *kvdbv1.WatchRequest {
	return &kvdbv1.WatchRequest{Request: &kvdbv1.WatchRequest_CreateRequest{CreateRequest: c}}
}

// openWatch opens a stream, creates one watcher and returns the stream
// after its created answer.
func openWatch(t *testing.T, n *testNode, c *kvdbv1.WatchCreateRequest) (kvdbv1.WatchService_WatchClient, int64) {
	t.Helper()
	ws, err := kvdbv1.NewWatchServiceClient(n.conn).Watch(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Send(createReq(c)); err != nil {
		t.Fatal(err)
	}
	r, err := ws.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !r.GetCreated() {
		t.Fatalf("first answer %v, want created", r)
	}
	return ws, r.GetWatchId()
}

func eventLine(e *kvdbv1.Event) string {
	if e.GetType() == kvdbv1.Event_EVENT_TYPE_DELETE {
		return fmt.Sprintf("DELETE %s@%d", e.GetKv().GetKey(), e.GetKv().GetModRevision())
	}
	kv := e.GetKv()
	s := fmt.Sprintf("PUT %s=%s@%d c=%d v=%d", kv.GetKey(), kv.GetValue(), kv.GetModRevision(), kv.GetCreateRevision(), kv.GetVersion())
	if p := e.GetPrevKv(); p != nil {
		s += fmt.Sprintf(" prev=%s", p.GetValue())
	}
	return s
}

// recvEvents reads responses until n events have arrived; each response's
// events are one line group (one or more whole revisions).
func recvEvents(t *testing.T, ws kvdbv1.WatchService_WatchClient, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		r, err := ws.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", out, err)
		}
		if r.GetCanceled() {
			t.Fatalf("canceled: %v", r)
		}
		for _, e := range r.GetEvents() {
			out = append(out, eventLine(e))
		}
	}
	return out
}

// TestWatchService covers the gRPC surface on one node: events of puts,
// deletes, range deletes and batches, a batch as one response, prev_kv and
// filters, a Range at revision R followed by a watch from R+1, progress,
// cancel, and refusals with their codes.
func TestWatchService(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	put := func(k, v string) int64 {
		r, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetHeader().GetRevision()
	}
	all, _ := openWatch(t, n, &kvdbv1.WatchCreateRequest{Key: []byte("w/"), Prefix: true, PrevKv: true})
	noPut, _ := openWatch(t, n, &kvdbv1.WatchCreateRequest{Key: []byte("w/"), Prefix: true,
		Filters: []kvdbv1.WatchCreateRequest_FilterType{kvdbv1.WatchCreateRequest_FILTER_TYPE_NOPUT}})
	r1 := put("w/a", "1")
	put("w/a", "2")
	put("other", "x")
	if _, err := n.kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{
		{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte("w/b"), Value: []byte("3")}}},
		{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte("w/c"), Value: []byte("4")}}},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte("w/"), Prefix: true}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("PUT w/a=1@%d c=%d v=1", r1, r1),
		fmt.Sprintf("PUT w/a=2@%d c=%d v=2 prev=1", r1+1, r1),
		fmt.Sprintf("PUT w/b=3@%d c=%d v=1", r1+3, r1+3),
		fmt.Sprintf("PUT w/c=4@%d c=%d v=1", r1+3, r1+3),
		fmt.Sprintf("DELETE w/a@%d", r1+4),
		fmt.Sprintf("DELETE w/b@%d", r1+4),
		fmt.Sprintf("DELETE w/c@%d", r1+4),
	}
	if got := recvEvents(t, all, len(want)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("prefix watcher got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := recvEvents(t, noPut, 3); strings.Join(got, "\n") != strings.Join(want[4:], "\n") {
		t.Errorf("no-put watcher got %v", got)
	}

	// A Range at revision R, then a watch from R+1: every later change
	// once, nothing before.
	rr, err := n.kv.Range(ctx, &kvdbv1.RangeRequest{Key: []byte("w/"), Prefix: true})
	if err != nil {
		t.Fatal(err)
	}
	rev := rr.GetHeader().GetRevision()
	r2 := put("w/d", "5")
	from, _ := openWatch(t, n, &kvdbv1.WatchCreateRequest{Key: []byte("w/"), Prefix: true, StartRevision: rev + 1})
	if got := recvEvents(t, from, 1); got[0] != fmt.Sprintf("PUT w/d=5@%d c=%d v=1", r2, r2) {
		t.Errorf("watch from the range's revision + 1: %v", got)
	}

	// Progress: a response for the whole stream with the current revision.
	if err := from.Send(&kvdbv1.WatchRequest{Request: &kvdbv1.WatchRequest_ProgressRequest{ProgressRequest: &kvdbv1.WatchProgressRequest{}}}); err != nil {
		t.Fatal(err)
	}
	if p, err := from.Recv(); err != nil || p.GetWatchId() != -1 || p.GetHeader().GetRevision() != r2 {
		t.Errorf("progress: %v, %v; want watch_id -1 at revision %d", p, err, r2)
	}

	// Cancel: a canceled answer, and nothing more for that watcher.
	_, id := openWatch(t, n, &kvdbv1.WatchCreateRequest{Key: []byte("w/x")})
	ws, id2 := openWatch(t, n, &kvdbv1.WatchCreateRequest{Key: []byte("w/y")})
	_ = id
	if err := ws.Send(&kvdbv1.WatchRequest{Request: &kvdbv1.WatchRequest_CancelRequest{CancelRequest: &kvdbv1.WatchCancelRequest{WatchId: id2}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := ws.Recv(); err != nil || !r.GetCanceled() || r.GetWatchId() != id2 {
		t.Errorf("cancel: %v, %v", r, err)
	}
}

// TestWatchRefusals: an invalid, oversized or over-the-limit create is
// answered alone, Created and Canceled with a reason led by its code name
// (the id it asked for, or -1), as etcd answers it; the stream and the
// watcher made before it go on delivering events.
func TestWatchRefusals(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.Limits.MaxKeySize = 16; c.Limits.MaxWatchesPerStream = 2 })
	for i, tc := range []struct {
		name string
		req  *kvdbv1.WatchCreateRequest
		id   int64
		want string
	}{
		{"empty key", &kvdbv1.WatchCreateRequest{}, -1, "InvalidArgument: "},
		{"oversized key", &kvdbv1.WatchCreateRequest{Key: []byte(strings.Repeat("k", 17))}, -1, "InvalidArgument: "},
		{"oversized range end", &kvdbv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte(strings.Repeat("z", 17))}, -1, "InvalidArgument: "},
		{"end before key", &kvdbv1.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")}, -1, "InvalidArgument: "},
		{"negative start", &kvdbv1.WatchCreateRequest{Key: []byte("a"), StartRevision: -1}, -1, "InvalidArgument: "},
		{"id in use", &kvdbv1.WatchCreateRequest{Key: []byte("b"), WatchId: 7}, 7, "InvalidArgument: "},
		{"too many filters", &kvdbv1.WatchCreateRequest{Key: []byte("a"), Filters: []kvdbv1.WatchCreateRequest_FilterType{1, 2, 1}}, -1, "InvalidArgument: filters"},
		{"too many on a stream", &kvdbv1.WatchCreateRequest{Key: []byte("b"), WatchId: 9}, 9, "ResourceExhausted: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := kvdbv1.NewWatchServiceClient(n.conn).Watch(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			recv := func() *kvdbv1.WatchResponse {
				t.Helper()
				r, err := ws.Recv()
				if err != nil {
					t.Fatalf("the stream ended: %v", err)
				}
				return r
			}
			key := fmt.Sprintf("w%d", i)
			if err := ws.Send(createReq(&kvdbv1.WatchCreateRequest{Key: []byte(key), WatchId: 7})); err != nil {
				t.Fatal(err)
			}
			if r := recv(); !r.GetCreated() || r.GetCanceled() || r.GetWatchId() != 7 {
				t.Fatalf("first create = %v", r)
			}
			if tc.want == "ResourceExhausted: " {
				if err := ws.Send(createReq(&kvdbv1.WatchCreateRequest{Key: []byte("x"), WatchId: 8})); err != nil {
					t.Fatal(err)
				}
				recv()
			}
			if err := ws.Send(createReq(tc.req)); err != nil {
				t.Fatal(err)
			}
			r := recv()
			if !r.GetCreated() || !r.GetCanceled() || r.GetWatchId() != tc.id || !strings.HasPrefix(r.GetCancelReason(), tc.want) {
				t.Fatalf("refused create answered %v, want created+canceled id %d reason %q...", r, tc.id, tc.want)
			}
			mustPut(t, n, key, "v")
			if r := recv(); r.GetWatchId() != 7 || len(r.GetEvents()) != 1 || string(r.GetEvents()[0].GetKv().GetKey()) != key {
				t.Fatalf("the first watcher after the refusal got %v, want the put of %s", r, key)
			}
		})
	}
}

// TestWatchStreamLimit: past -max-watch-streams a new stream is refused
// with RESOURCE_EXHAUSTED; closing one makes room.
func TestWatchStreamLimit(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.Limits.MaxWatchStreams = 1 })
	ctx, cancel := context.WithCancel(ctxT(t))
	first, err := kvdbv1.NewWatchServiceClient(n.conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Send(createReq(&kvdbv1.WatchCreateRequest{Key: []byte("a")})); err != nil {
		t.Fatal(err)
	}
	if r, err := first.Recv(); err != nil || !r.GetCreated() {
		t.Fatalf("first stream: %v, %v", r, err)
	}
	second, err := kvdbv1.NewWatchServiceClient(n.conn).Watch(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second stream: %v, want ResourceExhausted", err)
	}
	cancel()
	for deadline := time.Now().Add(10 * time.Second); n.srv.core.Watches().Stats().Streams > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the canceled stream is still open")
		}
	}
	third, _ := openWatch(t, n, &kvdbv1.WatchCreateRequest{Key: []byte("a")})
	_ = third
}

// TestWatchCompacted: a start revision older than the history window gets
// created, then canceled with the oldest revision still held.
func TestWatchCompacted(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.WatchHistory = watch.Config{HistoryRevisions: 5} })
	ctx := ctxT(t)
	var last int64
	for i := range 20 {
		r, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("k"), Value: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		last = r.GetHeader().GetRevision()
	}
	ws, _ := openWatch(t, n, &kvdbv1.WatchCreateRequest{Key: []byte("k"), StartRevision: 1})
	r, err := ws.Recv()
	if err != nil {
		t.Fatal(err)
	}
	oldest := last - 4
	if !r.GetCanceled() || r.GetCompactRevision() != oldest || !strings.Contains(r.GetCancelReason(), "compacted") {
		t.Fatalf("got %v, want canceled with compact_revision %d", r, oldest)
	}
	// From the oldest revision held: the five last puts.
	ws, _ = openWatch(t, n, &kvdbv1.WatchCreateRequest{Key: []byte("k"), StartRevision: oldest})
	if got := recvEvents(t, ws, 5); !strings.HasPrefix(got[0], fmt.Sprintf("PUT k=15@%d", oldest)) {
		t.Errorf("from the oldest revision: %v", got)
	}
	_ = context.Background
}

// TestWatchSlowWatcher: a watcher whose client stops reading does not hold
// writes back (they all complete), its buffer stays within its bound, and
// once it reads again it either catches up from the history with every
// event once, in order, or, when the history no longer reaches back to
// it, is canceled with the oldest revision held.
func TestWatchSlowWatcher(t *testing.T) {
	const writes = 1500
	value := strings.Repeat("v", 1024)
	for _, tc := range []struct {
		name        string
		history     int64
		wantCatchUp bool
	}{
		{"catches up from the history", 100_000, true},
		{"falls out of the history", 50, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, t.TempDir(), func(c *Config) {
				c.WatchHistory = watch.Config{HistoryRevisions: tc.history, WatcherBufferBytes: 64 << 10}
			})
			ctx := ctxT(t)
			slow, _ := openWatch(t, n, &kvdbv1.WatchCreateRequest{Key: []byte("s/"), Prefix: true})
			hub := n.srv.core.Watches()
			var first, last int64
			maxBuffered := int64(0)
			for i := range writes {
				r, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(fmt.Sprintf("s/%d", i%100)), Value: []byte(value)})
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = r.GetHeader().GetRevision()
				}
				last = r.GetHeader().GetRevision()
				if i%100 == 0 {
					maxBuffered = max(maxBuffered, hub.Stats().BufferedBytes)
				}
			}
			st := hub.Stats()
			if maxBuffered > 64<<10 || st.Lagged == 0 {
				t.Errorf("buffered up to %d bytes (bound 64 KiB), lagged %d times; want within the bound and lagging", maxBuffered, st.Lagged)
			}
			next := first
			for next <= last {
				r, err := slow.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if r.GetCanceled() {
					if tc.wantCatchUp || r.GetCompactRevision() == 0 {
						t.Fatalf("canceled at %d: %v", next, r)
					}
					if hub.Stats().CanceledSlow != 1 {
						t.Errorf("canceled slow watchers: %d, want 1", hub.Stats().CanceledSlow)
					}
					return
				}
				for _, e := range r.GetEvents() {
					if e.GetKv().GetModRevision() != next {
						t.Fatalf("event at revision %d, want %d", e.GetKv().GetModRevision(), next)
					}
					next++
				}
			}
			if !tc.wantCatchUp {
				t.Errorf("caught up to %d; want a cancellation", last)
			}
		})
	}
}
