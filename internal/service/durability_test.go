package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode/wal"
)

// TestCrashPointsKeepAcknowledgedWrites injects a crash into the WAL at
// each point a real one can hit (wal.Faults): after a write and before its
// fsync, in the middle of a write (torn), and as a failing fsync, on the
// machine (what was not fsynced is lost) or on the process only. Writers
// keep writing single puts and 5-key batches until the node stops; then
// the node restarts from its data dir and every acknowledged write must be
// there, and every batch must be there whole or not at all, acknowledged
// or not.
func TestCrashPointsKeepAcknowledgedWrites(t *testing.T) {
	type crashCase struct {
		point        wal.FaultPoint
		at           int
		loseUnsynced bool
		syncWrites   bool
	}
	var cases []crashCase
	// Write 1 is the WAL's creation, inside New. make test-durability
	// sweeps many more points (KVDB_CRASH_POINTS=n: every third write
	// from 1 up to n).
	ats := []int{1, 5, 24, 61}
	if v := os.Getenv("KVDB_CRASH_POINTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("KVDB_CRASH_POINTS=%q: want a positive number", v)
		}
		ats = nil
		for at := 1; at <= n; at += 3 {
			ats = append(ats, at)
		}
	}
	for _, at := range ats {
		cases = append(cases,
			// A machine crash keeps only what was fsynced: -sync-writes.
			crashCase{wal.CrashAfterWrite, at, true, true},
			crashCase{wal.CrashTornWrite, at, true, true},
			// A process crash keeps what reached the operating system,
			// which without -sync-writes is every acknowledged write too.
			crashCase{wal.CrashAfterWrite, at, false, false},
			crashCase{wal.CrashTornWrite, at, false, false},
			crashCase{wal.FailSync, at, false, true},
		)
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%s/at=%d/machine=%v/sync=%v", tc.point, tc.at, tc.loseUnsynced, tc.syncWrites)
		t.Run(name, func(t *testing.T) {
			faults := &wal.Faults{Point: tc.point, At: tc.at, LoseUnsynced: tc.loseUnsynced, TornAt: 5 + tc.at}
			dir := t.TempDir()
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			// The first writes are the node's own start (the WAL's
			// creation, the bootstrap entries): a fault there fails New,
			// or stops the node before it has a leader, and nothing can
			// have been acknowledged. The restart below must still work.
			n, err := tryStartOn(t, lis, nodeConfig(dir, func(c *Config) {
				c.Raft.SyncWrites = tc.syncWrites
				c.Raft.WALFaults = faults
			}))
			var acked ackedWrites
			switch {
			case err == nil:
				acked = crashUnderWrites(t, n, faults)
			case errors.Is(err, wal.ErrCrashed):
				t.Logf("the fault stopped the node's start: %v", err)
			default:
				t.Fatalf("New: %v", err)
			}
			t.Logf("%s; %d puts and %d batches acknowledged", faults.What(), len(acked.puts), len(acked.batches))

			n = startNode(t, dir, nil)
			got := dump(t, n)
			for k, v := range acked.puts {
				if r, ok := got[k]; !ok || string(r.value) != v {
					t.Errorf("acknowledged put %s=%s lost after %s (found %q, %v)", k, v, faults.What(), r.value, ok)
				}
			}
			for b := range acked.batches {
				for j := range batchKeys {
					if _, ok := got[batchKey(b, j)]; !ok {
						t.Errorf("acknowledged batch %s lost key %d after %s", b, j, faults.What())
					}
				}
			}
			// Whole or nothing, acknowledged or not.
			for b := range acked.tried {
				present := 0
				for j := range batchKeys {
					if _, ok := got[batchKey(b, j)]; ok {
						present++
					}
				}
				if present != 0 && present != batchKeys {
					t.Errorf("batch %s half applied after %s: %d of %d keys", b, faults.What(), present, batchKeys)
				}
			}
		})
	}
}

const batchKeys = 5

func batchKey(batch string, j int) string { return fmt.Sprintf("%s/%d", batch, j) }

type ackedWrites struct {
	puts    map[string]string // key -> value
	batches map[string]bool
	tried   map[string]bool // every batch sent
}

// crashUnderWrites writes until the injected fault stops the node and
// returns what was acknowledged.
func crashUnderWrites(t *testing.T, n *testNode, faults *wal.Faults) ackedWrites {
	t.Helper()
	var (
		mu  sync.Mutex
		out = ackedWrites{puts: map[string]string{}, batches: map[string]bool{}, tried: map[string]bool{}}
		wg  sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				if i%3 == 2 {
					b := fmt.Sprintf("b%d-%d", w, i)
					req := &kvdbv1.BatchRequest{}
					for j := range batchKeys {
						req.Ops = append(req.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte(batchKey(b, j)), Value: []byte(b)}}})
					}
					mu.Lock()
					out.tried[b] = true
					mu.Unlock()
					if _, err := n.kv.Batch(ctx, req); err == nil {
						mu.Lock()
						out.batches[b] = true
						mu.Unlock()
					}
				} else {
					k, v := fmt.Sprintf("p%d-%d", w, i), fmt.Sprintf("v%d", i)
					if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)}); err == nil {
						mu.Lock()
						out.puts[k] = v
						mu.Unlock()
					}
				}
				cancel()
			}
		}()
	}
	select {
	case <-faults.Crashed():
	case <-time.After(time.Minute):
		close(stop)
		wg.Wait()
		t.Fatal("the fault was never injected")
	}
	// The node stops on the WAL error; writes fail from then on.
	select {
	case <-n.srv.Node().Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the node did not stop after its WAL failed")
	}
	close(stop)
	wg.Wait()
	n.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.srv.Shutdown(ctx) // reports the WAL failure
	<-n.done
	n.srv = nil
	return out
}

// TestClusterCrashPointsKeepAcknowledgedWrites crashes the members of a
// 3-node cluster one after another as machines (what was not fsynced is
// lost), each at another WAL write, while writers go through every node.
// After all restart, every acknowledged write is in the cluster and no
// batch is half applied.
func TestClusterCrashPointsKeepAcknowledgedWrites(t *testing.T) {
	for _, point := range []wal.FaultPoint{wal.CrashAfterWrite, wal.CrashTornWrite} {
		t.Run(point.String(), func(t *testing.T) {
			faults := []*wal.Faults{
				{Point: point, At: 40, LoseUnsynced: true, TornAt: 7},
				{Point: point, At: 70, LoseUnsynced: true, TornAt: 11},
				{Point: point, At: 100, LoseUnsynced: true, TornAt: 13},
			}
			armed := true
			c := newCluster(t, 3, func(cfg *Config) {
				cfg.Raft.SyncWrites = true
				var i int
				if _, err := fmt.Sscanf(cfg.NodeID, "n%d", &i); armed && err == nil {
					cfg.Raft.WALFaults = faults[i-1] // newCluster names them n1..n3
				}
			})
			var (
				mu    sync.Mutex
				acked = ackedWrites{puts: map[string]string{}, batches: map[string]bool{}, tried: map[string]bool{}}
				wg    sync.WaitGroup
			)
			stop := make(chan struct{})
			for w := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						kv := c.kv((w + i) % 3)
						if kv == nil {
							continue
						}
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						if i%3 == 2 {
							b := fmt.Sprintf("b%d-%d", w, i)
							req := &kvdbv1.BatchRequest{}
							for j := range batchKeys {
								req.Ops = append(req.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte(batchKey(b, j)), Value: []byte(b)}}})
							}
							mu.Lock()
							acked.tried[b] = true
							mu.Unlock()
							if _, err := kv.Batch(ctx, req); err == nil {
								mu.Lock()
								acked.batches[b] = true
								mu.Unlock()
							}
						} else {
							k, v := fmt.Sprintf("p%d-%d", w, i), fmt.Sprintf("v%d", i)
							if _, err := kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)}); err == nil {
								mu.Lock()
								acked.puts[k] = v
								mu.Unlock()
							}
						}
						cancel()
					}
				}()
			}
			// Reap members as they crash; once two are down the last one
			// cannot commit (or write) any more.
			down := 0
			deadline := time.After(time.Minute)
			for down < 2 {
				select {
				case <-deadline:
					close(stop)
					wg.Wait()
					t.Fatalf("only %d members crashed", down)
				case <-time.After(10 * time.Millisecond):
				}
				for i := range faults {
					select {
					case <-faults[i].Crashed():
					default:
						continue
					}
					if c.kv(i) != nil {
						c.reap(i)
						t.Logf("%s: %s", c.names[i], faults[i].What())
						down++
					}
				}
			}
			close(stop)
			wg.Wait()
			armed = false
			for i := range faults {
				c.stop(i)
			}
			for i := range faults {
				c.start(i)
			}
			c.waitLeader()
			c.waitConverged()
			got := dump(t, c.nodes[0])
			for k, v := range acked.puts {
				if r, ok := got[k]; !ok || string(r.value) != v {
					t.Errorf("acknowledged put %s=%s lost (found %q, %v)", k, v, r.value, ok)
				}
			}
			for b := range acked.batches {
				for j := range batchKeys {
					if _, ok := got[batchKey(b, j)]; !ok {
						t.Errorf("acknowledged batch %s lost key %d", b, j)
					}
				}
			}
			for b := range acked.tried {
				present := 0
				for j := range batchKeys {
					if _, ok := got[batchKey(b, j)]; ok {
						present++
					}
				}
				if present != 0 && present != batchKeys {
					t.Errorf("batch %s half applied: %d of %d keys", b, present, batchKeys)
				}
			}
			t.Logf("%d puts and %d batches acknowledged", len(acked.puts), len(acked.batches))
		})
	}
}

// reap takes down node i after its WAL crashed: the node has stopped
// itself; its server is shut down without reporting that as a test error.
func (c *testCluster) reap(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	<-n.srv.Node().Done()
	n.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.srv.Shutdown(ctx)
	<-n.done
	n.srv = nil
}
