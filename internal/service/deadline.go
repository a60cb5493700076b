package service

import (
	"net"
	"time"
)

// connDeadline remembers one socket deadline (read or write) so that a
// connection answering many small requests does not re-arm it on every
// request: each SetReadDeadline or SetWriteDeadline reschedules a runtime
// timer, and at tens of thousands of requests per second that showed in
// CPU profiles. A deadline already set that is no further than slack
// (timeout/8) before the wanted one is kept, so the effective timeout lies
// between 7/8 of the configured one and all of it; a wanted deadline
// earlier than the one set (a shorter timeout) is always set.
type connDeadline struct {
	at    time.Time // the deadline on the socket; zero: none
	known bool      // at is what the socket has (not set elsewhere before)
}

// want returns the deadline now+timeout (none for timeout <= 0) and
// whether the socket needs it set.
func (d *connDeadline) want(now time.Time, timeout time.Duration) (time.Time, bool) {
	if timeout <= 0 {
		return time.Time{}, !d.known || !d.at.IsZero()
	}
	want := now.Add(timeout)
	if d.known && !d.at.IsZero() && !d.at.After(want) && want.Sub(d.at) <= timeout/8 {
		return want, false
	}
	return want, true
}

// read arms c's read deadline to now+timeout (none for timeout <= 0).
func (d *connDeadline) read(c net.Conn, timeout time.Duration) {
	if at, ok := d.want(time.Now(), timeout); ok {
		d.at, d.known = at, true
		_ = c.SetReadDeadline(at)
	}
}

// write arms c's write deadline to now+timeout.
func (d *connDeadline) write(c net.Conn, timeout time.Duration) {
	if at, ok := d.want(time.Now(), timeout); ok {
		d.at, d.known = at, true
		_ = c.SetWriteDeadline(at)
	}
}
