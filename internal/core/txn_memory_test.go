package core

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/engine"
)

func newTestTxnManager(limit int64) *txnManager {
	l := DefaultLimits
	return newTxnManager(time.Minute, 100, &l, newMemoryGuard(engine.New(), limit, EvictNone), "t")
}

// TestTxnChargeReservesMemory: what sessions record is reserved against
// MaxMemory until each ends, however it ends, and a charge past the limit
// fails with ErrMemoryLimit naming max-memory and leaves the session as it
// was.
func TestTxnChargeReservesMemory(t *testing.T) {
	ends := []struct {
		name string
		end  func(m *txnManager, s *txnSession)
	}{
		{"commit or rollback", func(m *txnManager, s *txnSession) {
			got, err := m.end(s.id, "")
			if err != nil {
				t.Fatal(err)
			}
			got.mu.Unlock()
		}},
		{"expiry", func(m *txnManager, s *txnSession) {
			m.mu.Lock()
			m.expireLocked(s, m.now())
			m.mu.Unlock()
		}},
	}
	ctx := context.Background()
	for _, tt := range ends {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestTxnManager(10_000)
			a, _ := m.begin("a", 0, "")
			b, _ := m.begin("b", 0, "")
			if err := m.charge(ctx, nil, a, 2, 6000); err != nil {
				t.Fatal(err)
			}
			want := int64(6000 + 2*txnOpOverhead)
			if p, h := m.mem.pending.Load(), a.held.Load(); p != want || h != want || m.buffered.Load() != want {
				t.Fatalf("pending %d, held %d, buffered %d; want %d", p, h, m.buffered.Load(), want)
			}
			err := m.charge(ctx, nil, b, 1, 4000)
			if !errors.Is(err, ErrMemoryLimit) || CodeOf(err) != ResourceExhausted {
				t.Fatalf("charge past max-memory: %v (%v)", err, CodeOf(err))
			}
			t.Log(err)
			if b.ops != 0 || b.bytes != 0 || b.held.Load() != 0 {
				t.Fatalf("refused charge left ops %d bytes %d held %d", b.ops, b.bytes, b.held.Load())
			}
			tt.end(m, a)
			if p := m.mem.pending.Load(); p != 0 || m.buffered.Load() != 0 {
				t.Fatalf("after the end: pending %d, buffered %d", p, m.buffered.Load())
			}
			if err := m.charge(ctx, nil, b, 1, 4000); err != nil {
				t.Fatalf("charge once room was given back: %v", err)
			}
		})
	}
}

// TestTxnChargeRacingExpiry charges a session while the sweeper expires
// it: every byte reserved is given back exactly once. Run with -race.
func TestTxnChargeRacingExpiry(t *testing.T) {
	m := newTestTxnManager(1 << 30)
	ctx := context.Background()
	for range 200 {
		s, err := m.begin("", 0, "")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			s.mu.Lock()
			defer s.mu.Unlock()
			for range 20 {
				if err := m.charge(ctx, nil, s, 1, 10); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			m.mu.Lock()
			m.expireLocked(s, m.now())
			m.mu.Unlock()
		}()
		wg.Wait()
		if p := m.mem.pending.Load(); p != 0 || m.buffered.Load() != 0 || s.held.Load() != 0 {
			t.Fatalf("after expiry: pending %d, buffered %d, held %d", p, m.buffered.Load(), s.held.Load())
		}
	}
}

// TestTxnSlotsPerUser: a named user holds at most half of max-txns open
// sessions, so others can still begin; ending or expiring one frees its
// slot. Without auth (no name) only max-txns applies.
func TestTxnSlotsPerUser(t *testing.T) {
	m := newTestTxnManager(0)
	m.maxTxns = 6
	begin := func(owner string) (*txnSession, error) { return m.begin("", 1, owner) }
	var alice []*txnSession
	for range 3 {
		s, err := begin("alice")
		if err != nil {
			t.Fatal(err)
		}
		alice = append(alice, s)
	}
	if _, err := begin("alice"); !errors.Is(err, ErrTooManyTxns) {
		t.Fatalf("alice's fourth: %v, want ErrTooManyTxns", err)
	}
	if _, err := begin("bob"); err != nil {
		t.Fatalf("bob while alice holds her half: %v", err)
	}
	// Ended and expired sessions give their slots back.
	got, err := m.end(alice[0].id, "alice")
	if err != nil {
		t.Fatal(err)
	}
	got.mu.Unlock()
	m.mu.Lock()
	m.expireLocked(alice[1], m.now())
	m.mu.Unlock()
	for range 2 {
		if _, err := begin("alice"); err != nil {
			t.Fatalf("alice after two of hers ended: %v", err)
		}
	}
	if _, err := begin("alice"); !errors.Is(err, ErrTooManyTxns) {
		t.Fatalf("alice over her half again: %v", err)
	}
	// Without a user name the node-wide limit alone applies: 4 are open.
	for range 2 {
		if _, err := begin(""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := begin(""); !errors.Is(err, ErrTooManyTxns) {
		t.Fatalf("over max-txns: %v", err)
	}
	if len(m.owned) != 2 || m.owned["alice"] != 3 || m.owned["bob"] != 1 {
		t.Fatalf("owned = %v", m.owned)
	}
}
