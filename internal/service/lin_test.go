package service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// The linearizability check: concurrent clients put, get and compare-and-swap (Execute) a few keys on
// a 3-node cluster while partitions, leader kills and restarts are
// injected; the history is checked with porcupine. An operation whose
// outcome is unknown (timeout, node killed) is kept with an open end: it
// may take effect at any point after its call, or not at all.
//
// make test runs a few seeds; make test-linearizability SEEDS=N runs N
// seeds from KVDB_LIN_FIRST_SEED (default 1), and KVDB_LIN_SEED=S replays
// one seed.

type linOp uint8

const (
	linGet linOp = iota
	linPut
	linCAS // put value if the key holds expect
)

type linInput struct {
	op     linOp
	key    string
	value  string
	expect string
}

type linOutput struct {
	value   string
	found   bool
	swapped bool
	unknown bool
}

// linState is one key's value; "" with found=false is absent.
type linState struct {
	value string
	found bool
}

var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(linInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return linState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(linState), input.(linInput), output.(linOutput)
		switch in.op {
		case linPut:
			return true, linState{value: in.value, found: true}
		case linCAS:
			match := st.found && st.value == in.expect
			next := st
			if match {
				next = linState{value: in.value, found: true}
			}
			if out.unknown {
				return true, next
			}
			return out.swapped == match, next
		default:
			if out.unknown {
				return true, st
			}
			return out.found == st.found && out.value == st.value, st
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		if in.op == linPut {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		if in.op == linCAS {
			return fmt.Sprintf("cas(%s, %s -> %s) = %v (unknown %v)", in.key, in.expect, in.value, out.swapped, out.unknown)
		}
		if out.unknown {
			return fmt.Sprintf("get(%s) -> ?", in.key)
		}
		return fmt.Sprintf("get(%s) -> %q/%v", in.key, out.value, out.found)
	},
}

func linSeeds(t *testing.T) []uint64 {
	if s := os.Getenv("KVDB_LIN_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KVDB_LIN_SEED: %v", err)
		}
		return []uint64{seed}
	}
	n, first := 2, uint64(1)
	if s := os.Getenv("KVDB_LIN_SEEDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("KVDB_LIN_FIRST_SEED"); s != "" {
		first, _ = strconv.ParseUint(s, 10, 64)
	}
	if testing.Short() {
		n = 1
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = first + uint64(i)
	}
	return seeds
}

func TestLinearizabilityUnderFaults(t *testing.T) {
	for _, seed := range linSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			ok := runLinearizability(t, seed, 2500*time.Millisecond)
			if !ok {
				t.Fatalf("history is not linearizable; replay with: KVDB_LIN_SEED=%d go test -run TestLinearizabilityUnderFaults ./internal/service/", seed)
			}
		})
	}
}

func runLinearizability(t *testing.T, seed uint64, duration time.Duration) bool {
	c := newCluster(t, 3, nil)
	rng := rand.New(rand.NewPCG(seed, 99))
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	const farFuture = int64(1) << 62

	var (
		mu      sync.Mutex
		history []porcupine.Operation
		stop    atomic.Bool
		wg      sync.WaitGroup
		known   atomic.Int64
	)
	keys := []string{"a", "b", "c", "d", "e"}
	for client := 0; client < 5; client++ {
		crng := rand.New(rand.NewPCG(seed, uint64(client)))
		wg.Add(1)
		go func(client int) {
			defer wg.Done()
			lastSeen := map[string]string{}
			for n := 0; !stop.Load() && n < 100_000; n++ {
				node := crng.IntN(3)
				kv, tc := c.kv(node), c.txn(node)
				if kv == nil || tc == nil {
					time.Sleep(time.Millisecond)
					continue
				}
				in := linInput{op: linOp(crng.IntN(3)), key: keys[crng.IntN(len(keys))]}
				if in.op == linCAS && lastSeen[in.key] == "" {
					in.op = linGet // learn a value to swap from first
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				call := now()
				var out linOutput
				var err error
				switch in.op {
				case linPut:
					in.value = fmt.Sprintf("c%d-%d", client, n)
					_, err = kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(in.key), Value: []byte(in.value)})
				case linCAS:
					in.value, in.expect = fmt.Sprintf("c%d-%d", client, n), lastSeen[in.key]
					var resp *kvdbv1.ExecuteResponse
					resp, err = tc.Execute(ctx, &kvdbv1.ExecuteRequest{
						Compares: []*kvdbv1.Compare{{Key: []byte(in.key), Operator: kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL,
							Operand: &kvdbv1.Compare_Value{Value: []byte(in.expect)}}},
						Success: []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: []byte(in.key), Value: []byte(in.value)}}}},
					})
					out.swapped = err == nil && resp.GetSucceeded()
				default:
					var resp *kvdbv1.GetResponse
					resp, err = kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte(in.key)})
					if err == nil {
						out = linOutput{value: string(resp.GetKv().GetValue()), found: true}
						lastSeen[in.key] = out.value
					} else if status.Code(err) == codes.NotFound {
						out, err = linOutput{}, nil
					}
				}
				cancel()
				ret := now()
				if err != nil {
					time.Sleep(5 * time.Millisecond) // no hot loop while there is no leader
					if in.op != linGet && definitelyNotApplied(err) {
						continue // raft refused it: it had no effect
					}
					out.unknown = true
					if in.op != linGet {
						// The write may still apply at any later time.
						ret = farFuture
					}
				} else {
					known.Add(1)
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}(client)
	}

	// Faults, one every 150-400 ms, until the time is up.
	for time.Since(start) < duration {
		time.Sleep(time.Duration(150+rng.IntN(250)) * time.Millisecond)
		switch rng.IntN(5) {
		case 0:
			if l := c.leader(); l >= 0 {
				c.net.Isolate(c.ids[l])
			}
		case 1:
			i := rng.IntN(3)
			c.net.Partition([]uint64{c.ids[i]}, []uint64{c.ids[(i+1)%3], c.ids[(i+2)%3]})
		case 2:
			if l := c.leader(); l >= 0 {
				c.kill(l)
				time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
				c.start(l)
			}
		case 3:
			c.net.SetDrop(0.2)
		default:
			c.net.Heal()
		}
	}
	c.net.Heal()
	stop.Store(true)
	wg.Wait()
	if known.Load() < 20 {
		t.Fatalf("only %d operations completed: the run exercised nothing", known.Load())
	}
	res, info := porcupine.CheckOperationsVerbose(kvModel, history, 60*time.Second)
	swaps := 0
	for _, op := range history {
		if op.Output.(linOutput).swapped {
			swaps++
		}
	}
	t.Logf("seed %d: %d operations (%d with a known outcome, %d successful compare-and-swaps), result %s", seed, len(history), known.Load(), swaps, res)
	if res == porcupine.Illegal {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("kvdb-lin-seed-%d.html", seed))
		if err := porcupine.VisualizePath(kvModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		return false
	}
	if res == porcupine.Unknown {
		t.Fatalf("porcupine timed out checking the history")
	}
	c.waitConverged()
	return true
}

// definitelyNotApplied is true for errors that prove a write never entered
// the log: raft dropped the proposal, or the node refused it before
// proposing. Anything else (timeouts, broken connections) is ambiguous.
func definitelyNotApplied(err error) bool {
	st := status.Convert(err)
	switch st.Code() {
	case codes.ResourceExhausted, codes.InvalidArgument:
		return true
	case codes.Unavailable:
		return strings.Contains(st.Message(), "proposal dropped")
	}
	return false
}

// TestLinearizabilityModelRejectsStaleRead proves the checker can fail: a
// read that returns an overwritten value after the overwrite completed is
// not linearizable, and an unknown write may explain a later read.
func TestLinearizabilityModelRejectsStaleRead(t *testing.T) {
	op := func(client int, in linInput, call int64, out linOutput, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	stale := []porcupine.Operation{
		op(0, linInput{op: linPut, key: "a", value: "1"}, 0, linOutput{}, 10),
		op(0, linInput{op: linPut, key: "a", value: "2"}, 20, linOutput{}, 30),
		op(1, linInput{op: linGet, key: "a"}, 40, linOutput{value: "1", found: true}, 50),
	}
	if porcupine.CheckOperations(kvModel, stale) {
		t.Fatal("a stale read passed the checker")
	}
	unknownWrite := []porcupine.Operation{
		op(0, linInput{op: linPut, key: "a", value: "1"}, 0, linOutput{unknown: true}, 1<<62),
		op(1, linInput{op: linGet, key: "a"}, 40, linOutput{}, 50),
		op(1, linInput{op: linGet, key: "a"}, 60, linOutput{value: "1", found: true}, 70),
	}
	if !porcupine.CheckOperations(kvModel, unknownWrite) {
		t.Fatal("an unknown write that applied late was rejected")
	}
	badSwap := []porcupine.Operation{
		op(0, linInput{op: linPut, key: "a", value: "1"}, 0, linOutput{}, 10),
		op(1, linInput{op: linCAS, key: "a", expect: "2", value: "3"}, 20, linOutput{swapped: true}, 30),
	}
	if porcupine.CheckOperations(kvModel, badSwap) {
		t.Fatal("a compare-and-swap that succeeded against the wrong value passed")
	}
	badSwap[1].Input = linInput{op: linCAS, key: "a", expect: "1", value: "3"}
	if !porcupine.CheckOperations(kvModel, badSwap) {
		t.Fatal("a correct compare-and-swap was rejected")
	}
	neverApplied := append(unknownWrite[:2:2], op(1, linInput{op: linGet, key: "a"}, 60, linOutput{}, 70))
	if !porcupine.CheckOperations(kvModel, neverApplied) {
		t.Fatal("an unknown write that never applied was rejected")
	}
}
