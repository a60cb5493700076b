package core

import (
	"slices"
	"testing"
	"time"
)

func newTestLessor() *lessor {
	l := &lessor{deadlines: map[int64]time.Time{}, revoking: map[int64]time.Time{}, late: map[int64]struct{}{}}
	l.rebuild()
	return l
}

// TestLessorDue: the expiry loop's view of lease deadlines through the
// queue: only leases past their deadline are due, a renewed deadline
// leaves no stale entry behind that counts, a revoked lease is forgotten,
// a proposed revoke waits retry before it is proposed again, max bounds a
// round, and the overdue set names every lease past its deadline.
func TestLessorDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const retry = time.Second
	l := newTestLessor()
	for id := int64(1); id <= 10; id++ {
		l.setDeadline(id, t0.Add(time.Duration(id)*time.Second))
	}
	if got := l.due(t0, retry, 100); len(got) != 0 {
		t.Fatalf("due before any deadline: %v", got)
	}
	// Lease 2 is renewed before its deadline; lease 3 is revoked.
	l.setDeadline(2, t0.Add(time.Hour))
	delete(l.deadlines, 3)
	got := l.due(t0.Add(4*time.Second), retry, 100)
	slices.Sort(got)
	if !slices.Equal(got, []int64{1, 4}) {
		t.Fatalf("due at +4s: %v, want [1 4]", got)
	}
	over := *l.overdue.Load()
	if len(over) != 2 {
		t.Fatalf("overdue set %v, want leases 1 and 4", over)
	}
	// Their revokes are in flight: not proposed again within retry, but
	// still overdue; max bounds what a round proposes.
	got = l.due(t0.Add(4*time.Second+retry/2), retry, 1)
	if len(got) != 0 {
		t.Fatalf("revokes in flight proposed again: %v", got)
	}
	got = l.due(t0.Add(6*time.Second), retry, 1)
	if len(got) != 1 {
		t.Fatalf("round with max 1 proposed %v", got)
	}
	if over := *l.overdue.Load(); len(over) != 4 {
		t.Fatalf("overdue set at +6s %v, want 1, 4, 5, 6", over)
	}
	// A revoke applied: the lease leaves every set.
	delete(l.deadlines, 1)
	delete(l.revoking, 1)
	delete(l.late, 1)
	l.due(t0.Add(6*time.Second), retry, 100)
	if _, ok := (*l.overdue.Load())[1]; ok {
		t.Fatal("a revoked lease is still overdue")
	}
	// Renewals do not grow the queue without bound.
	for i := range 100_000 {
		l.setDeadline(2, t0.Add(time.Hour+time.Duration(i)))
	}
	if len(l.queue) > 2*len(l.deadlines)+1024 {
		t.Fatalf("queue holds %d entries for %d leases", len(l.queue), len(l.deadlines))
	}
	// Lease 2's old deadlines are stale: it is due only at its last one.
	if got := l.due(t0.Add(time.Hour), retry, 100); slices.Contains(got, 2) {
		t.Fatalf("lease 2 due at a deadline it was renewed past: %v", got)
	}
}

// BenchmarkLessorDue is one expiry round over 100,000 leases of which
// none is due: the loop's cost every 50 ms on a leader holding them.
func BenchmarkLessorDue(b *testing.B) {
	t0 := time.Unix(1000, 0)
	l := newTestLessor()
	for id := int64(1); id <= 100_000; id++ {
		l.setDeadline(id, t0.Add(time.Minute+time.Duration(id)*time.Millisecond))
	}
	b.ResetTimer()
	for b.Loop() {
		l.due(t0, time.Second, 2048)
	}
}
