package wal

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
)

// TestFaults checks each injected failure at the WAL level: what a reopen
// recovers is exactly what was fsynced (machine crash) or written (process
// crash), a torn write is cut off, and a failed fsync poisons the WAL.
func TestFaults(t *testing.T) {
	for _, zeroAhead := range []int64{0, 64 << 10} {
		t.Run(fmt.Sprintf("zero-ahead=%d", zeroAhead), func(t *testing.T) { testFaults(t, zeroAhead) })
	}
}

// testFaults runs TestFaults's cases; with zeroAhead, records land in
// zeros written ahead, and a machine crash turns what was not fsynced back
// into zeros instead of cutting the file.
func testFaults(t *testing.T, zeroAhead int64) {
	// Writes 1 and 2 are the first segment's header and its fsync's;
	// entries 1-10 are synced by write 2, entries 11-20 go in write 3.
	for _, tc := range []struct {
		name string
		f    *Faults
		want uint64 // last index recovered
	}{
		{"machine crash after write", &Faults{Point: CrashAfterWrite, At: 3, LoseUnsynced: true}, 10},
		{"process crash after write", &Faults{Point: CrashAfterWrite, At: 3}, 20},
		// 101 bytes of write 3 land: two whole entry records, then a
		// piece of the third, which recovery cuts off.
		{"torn write", &Faults{Point: CrashTornWrite, At: 3, TornAt: 100}, 12},
		{"machine crash, torn write", &Faults{Point: CrashTornWrite, At: 3, TornAt: 100, LoseUnsynced: true}, 12},
		{"fsync error", &Faults{Point: FailSync, At: 3}, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := tc.f
			w, _ := mustOpen(t, dir, Options{Faults: f, ZeroAhead: zeroAhead})
			must(t, w.Save(hardState(1, 1, 0), ents(1, 10, 1)))
			must(t, w.Sync())
			must(t, w.Save(hardState(1, 1, 10), ents(11, 20, 1)))
			err := w.Sync()
			if !errors.Is(err, ErrCrashed) {
				t.Fatalf("Sync after the fault: %v, want ErrCrashed", err)
			}
			if tc.f.Point == FailSync && !errors.Is(err, syscall.EIO) {
				t.Fatalf("failed fsync: %v, want EIO", err)
			}
			select {
			case <-f.Crashed():
			default:
				t.Fatal("Crashed not closed")
			}
			if err := w.Save(nil, ents(21, 21, 1)); err == nil {
				t.Fatal("the WAL still accepts records after a crash")
			}
			w.Close()
			w2, c := mustOpen(t, dir, Options{})
			defer w2.Close()
			if got := uint64(len(c.Entries)); got != tc.want {
				t.Fatalf("recovered %d entries, want %d (%s)", got, tc.want, f.What())
			}
			checkEntries(t, c.Entries, ents(1, tc.want, 1))
		})
	}
}
