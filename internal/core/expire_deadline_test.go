package core

import (
	"testing"
	"time"
)

func TestMillisUp(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_123)
	tests := []struct {
		t    time.Time
		want int64
	}{
		{base, 1_700_000_000_123},
		{base.Add(time.Nanosecond), 1_700_000_000_124},
		{base.Add(999 * time.Microsecond), 1_700_000_000_124},
		{base.Add(time.Millisecond), 1_700_000_000_124},
		{base.Add(-time.Nanosecond), 1_700_000_000_123},
	}
	for _, tc := range tests {
		if got := millisUp(tc.t); got != tc.want {
			t.Errorf("millisUp(%v) = %d, want %d", tc.t.UnixNano(), got, tc.want)
		}
	}
	// A deadline is never before the TTL has passed.
	for range 1000 {
		start := time.Now()
		d := DeadlineAfter(100 * time.Millisecond)
		if time.UnixMilli(d).Before(start.Add(100 * time.Millisecond)) {
			t.Fatalf("deadline %d before start+ttl %v", d, start.Add(100*time.Millisecond).UnixNano())
		}
	}
}
