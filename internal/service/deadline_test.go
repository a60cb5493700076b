package service

import (
	"testing"
	"time"
)

func TestConnDeadlineWant(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const timeout = 8 * time.Second
	tests := []struct {
		name    string
		set     connDeadline // what the socket has
		now     time.Time
		timeout time.Duration
		arm     bool
	}{
		{"unknown", connDeadline{}, t0, timeout, true},
		{"unknown, none wanted", connDeadline{}, t0, 0, true},
		{"just set", connDeadline{t0.Add(timeout), true}, t0, timeout, false},
		{"set within slack", connDeadline{t0.Add(timeout), true}, t0.Add(time.Second), timeout, false},
		{"fallen past slack", connDeadline{t0.Add(timeout), true}, t0.Add(time.Second + time.Millisecond), timeout, true},
		{"a later one set (longer timeout before)", connDeadline{t0.Add(time.Minute), true}, t0, timeout, true},
		{"none wanted, none set", connDeadline{time.Time{}, true}, t0, 0, false},
		{"none wanted, one set", connDeadline{t0.Add(timeout), true}, t0, 0, true},
		{"expired", connDeadline{t0.Add(-time.Second), true}, t0, timeout, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.set
			at, arm := d.want(tc.now, tc.timeout)
			if arm != tc.arm {
				t.Fatalf("arm = %v, want %v", arm, tc.arm)
			}
			if tc.timeout > 0 && !at.Equal(tc.now.Add(tc.timeout)) {
				t.Fatalf("deadline %v, want %v", at, tc.now.Add(tc.timeout))
			}
		})
	}
	// Over a long run of requests the deadline kept is never later than
	// the wanted one nor more than timeout/8 before it, and is re-armed
	// about once per slack, not per request.
	d := connDeadline{}
	now := t0
	arms := 0
	for i := 0; i < 10000; i++ {
		now = now.Add(3 * time.Millisecond)
		if at, arm := d.want(now, timeout); arm {
			d.at, d.known = at, true
			arms++
		}
		want := now.Add(timeout)
		if d.at.After(want) || want.Sub(d.at) > timeout/8 {
			t.Fatalf("at step %d the deadline %v is outside [%v, %v]", i, d.at, want.Add(-timeout/8), want)
		}
	}
	if arms > 40 {
		t.Fatalf("re-armed %d times over 30 s of requests with a %v timeout", arms, timeout)
	}
}
