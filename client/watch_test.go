package client

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/service"
	"github.com/kvdb/kvdb/internal/service/servicetest"
	"github.com/kvdb/kvdb/internal/watch"
)

// TestWatch: the channel carries every change of the prefix in order, a
// batch as one response, previous values on request, on both protocols'
// clients; a start revision older than the history ends the channel with
// ErrCompacted and the oldest revision held.
func TestWatch(t *testing.T) {
	_, addr := servicetest.StartServer(t, func(c *service.Config) { c.WatchHistory = watch.Config{HistoryRevisions: 8} })
	for _, proto := range []Protocol{ProtocolGRPC, ProtocolBinary} {
		t.Run(fmt.Sprint(proto), func(t *testing.T) {
			ctx := ctxT(t)
			c, err := New(ctx, Options{Endpoints: []string{addr}, Protocol: proto, PoolSize: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p := fmt.Sprintf("w%d/", proto)
			first, err := c.Put(ctx, []byte(p+"0"), []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			ch := c.Watch(ctx, []byte(p), WithPrefix(), WithPrevKV(), WithRev(first+1))
			if _, err := c.Put(ctx, []byte(p+"a"), []byte("1")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Put(ctx, []byte(p+"a"), []byte("2")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Batch(ctx, []BatchOp{{Key: []byte(p + "b"), Value: []byte("3")}, {Delete: true, Key: []byte(p + "a")}}); err != nil {
				t.Fatal(err)
			}
			// One line per revision; a response holds whole revisions.
			var got []string
			for events := 0; events < 4; {
				r, ok := <-ch
				if !ok || r.Err != nil {
					t.Fatalf("channel closed or failed after %v: %v", got, r.Err)
				}
				var line []string
				for i, e := range r.Events {
					s := e.String()
					if e.PrevKV != nil {
						s += " prev=" + string(e.PrevKV.Value)
					}
					line = append(line, s)
					if i == len(r.Events)-1 || r.Events[i+1].KV.ModRevision != e.KV.ModRevision {
						got = append(got, strings.Join(line, "; "))
						line = nil
					}
					events++
				}
			}
			want := []string{"PUT " + p + "a 1", "PUT " + p + "a 2 prev=1", "PUT " + p + "b 3; DELETE " + p + "a prev=2"}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			for i := range 10 {
				if _, err := c.Put(ctx, []byte(p+"c"), []byte(fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
			}
			r, ok := <-c.Watch(ctx, []byte(p), WithPrefix(), WithRev(1))
			if !ok || !errors.Is(r.Err, ErrCompacted) || r.CompactRevision <= 1 {
				t.Errorf("watch from revision 1: %+v, want ErrCompacted with the oldest revision", r)
			}
		})
	}
}

// TestWatchCompactedOnOneNodeOnly: a node whose history no longer holds
// the revision answers compacted; the client asks the next endpoint before
// giving up, and ends with ErrCompacted only when every endpoint did.
func TestWatchCompactedOnOneNodeOnly(t *testing.T) {
	ctx := ctxT(t)
	_, short := servicetest.StartServer(t, func(c *service.Config) { c.WatchHistory = watch.Config{HistoryRevisions: 2} })
	_, long := servicetest.StartServer(t, nil)
	for _, addr := range []string{short, long} {
		c, err := New(ctx, Options{Endpoints: []string{addr}})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if _, err := c.Put(ctx, []byte("k"), []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}
	c, err := New(ctx, Options{Endpoints: []string{short, long}, BackoffBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := <-c.Watch(ctx, []byte("k"), WithRev(1))
	if r.Err != nil || len(r.Events) == 0 || r.Events[0].KV.ModRevision != 1 {
		t.Fatalf("watch from 1 over a short and a long history: %+v", r)
	}
	c2, err := New(ctx, Options{Endpoints: []string{short, short}, BackoffBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if r := <-c2.Watch(ctx, []byte("k"), WithRev(1)); !errors.Is(r.Err, ErrCompacted) || r.CompactRevision != 4 {
		t.Fatalf("every endpoint compacted: %+v", r)
	}
}
