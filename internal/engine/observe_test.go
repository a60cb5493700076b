package engine

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

type recordingObserver struct {
	lines  []string
	resets []int64
}

func (o *recordingObserver) Committed(rev int64, events []Event) {
	var parts []string
	for i := range events {
		ev := &events[i]
		if ev.Revision() != rev {
			parts = append(parts, fmt.Sprintf("WRONG REV %d", ev.Revision()))
		}
		kv := ev.KV()
		s := fmt.Sprintf("%s %s=%s/%d/%d/%d", ev.Type(), kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
		if p, ok := ev.PrevKV(); ok {
			s += fmt.Sprintf(" prev=%s", p.Value)
		}
		parts = append(parts, s)
	}
	o.lines = append(o.lines, fmt.Sprintf("%d: %s", rev, strings.Join(parts, ", ")))
}

func (o *recordingObserver) Reset(rev int64) { o.resets = append(o.resets, rev) }

// TestObserverSeesEveryChange: every apply path reports its changes once
// per revision, with the revision the store publishes; nothing is
// reported for an apply that changes nothing; Restore reports a reset.
func TestObserverSeesEveryChange(t *testing.T) {
	s := New()
	o := &recordingObserver{}
	s.SetObserver(o)
	put := func(k, v string) Op { return Op{Type: OpPut, Key: []byte(k), Value: []byte(v)} }
	s.Apply(1, []Op{put("a", "1"), put("b", "1"), put("a", "2")})
	s.Apply(2, []Op{{Type: OpDelete, Key: []byte("missing")}})
	s.ApplyEach(3, [][]Op{{put("c", "1")}, {{Type: OpDelete, Key: []byte("a")}}})
	s.ApplyTxn(4, &Txn{Success: []Op{{Type: OpDeleteRange, Key: []byte("b"), End: []byte{0}}, put("d", "1")}})
	s.ApplyEvict(5, []EvictKey{{Key: []byte("d"), ModRevision: 4}})
	s.ApplyEachWith(6, 1, func(int, func([]byte) (KeyValue, bool)) []Op { return []Op{put("e", "1")} })
	want := []string{
		"1: PUT a=1/1/1/1, PUT b=1/1/1/1, PUT a=2/1/1/2 prev=1",
		"2: PUT c=1/2/2/1",
		"3: DELETE a=/0/3/0 prev=2",
		"4: DELETE b=/0/4/0 prev=1, DELETE c=/0/4/0 prev=1, PUT d=1/4/4/1",
		"5: DELETE d=/0/5/0 prev=1",
		"6: PUT e=1/6/6/1",
	}
	if got := strings.Join(o.lines, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if len(o.resets) != 1 || o.resets[0] != 6 {
		t.Errorf("resets %v, want [6]", o.resets)
	}
}

// TestObserverSeesExpiries: an expiry and a lease's revocation are DELETE
// events, all of one entry at one revision, like any other delete.
func TestObserverSeesExpiries(t *testing.T) {
	s := New()
	o := &recordingObserver{}
	s.SetObserver(o)
	if err := s.ApplyLeaseGrant(1, 7, 60); err != nil {
		t.Fatal(err)
	}
	put := func(k, v string, deadline, lease int64) Op {
		return Op{Type: OpPut, Key: []byte(k), Value: []byte(v), Deadline: deadline, Lease: lease}
	}
	s.Apply(2, []Op{put("t1", "1", 1000, 0), put("t2", "1", 1000, 0), put("l1", "1", 0, 7), put("l2", "1", 0, 7)})
	if n, ok := s.ApplyExpire(3, []EvictKey{{Key: []byte("t1"), ModRevision: 1}, {Key: []byte("t2"), ModRevision: 1}}); !ok || n != 2 {
		t.Fatalf("ApplyExpire = %d, %v", n, ok)
	}
	if n, err := s.ApplyLeaseRevoke(4, 7, true); err != nil || n != 2 {
		t.Fatalf("ApplyLeaseRevoke = %d, %v", n, err)
	}
	want := []string{
		"1: PUT t1=1/1/1/1, PUT t2=1/1/1/1, PUT l1=1/1/1/1, PUT l2=1/1/1/1",
		"2: DELETE t1=/0/2/0 prev=1, DELETE t2=/0/2/0 prev=1",
		"3: DELETE l1=/0/3/0 prev=1, DELETE l2=/0/3/0 prev=1",
	}
	if got := strings.Join(o.lines, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	if s.Revision() != 3 {
		t.Errorf("revision %d, want 3", s.Revision())
	}
}

// TestObserverUnpublishedPath: an apply path that moves the revision
// without setRevision is reported by CheckConsistency, and its changes
// still reach the observer under their own revision, before the next
// revision's.
func TestObserverUnpublishedPath(t *testing.T) {
	s := New()
	o := &recordingObserver{}
	s.SetObserver(o)
	s.Apply(1, []Op{{Type: OpPut, Key: []byte("a"), Value: []byte("1")}})
	// A removal path that forgets setRevision.
	s.mu.Lock()
	e, _ := s.m.getBytes([]byte("a"))
	s.remove(e)
	s.rev.Add(1)
	s.mu.Unlock()
	if msg := s.CheckConsistency(); !strings.Contains(msg, "never published") {
		t.Errorf("CheckConsistency = %q", msg)
	}
	s.Apply(2, []Op{{Type: OpPut, Key: []byte("b"), Value: []byte("1")}})
	want := "1: PUT a=1/1/1/1\n2: DELETE a=/0/2/0 prev=1\n3: PUT b=1/3/3/1"
	if got := strings.Join(o.lines, "\n"); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if msg := s.CheckConsistency(); msg != "" {
		t.Errorf("after the next apply: %s", msg)
	}
}
