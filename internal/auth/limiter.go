package auth

import (
	"fmt"
	"sync"
	"time"
)

// Failed logins are slowed down per user name and per client address: after
// limiterFree failures within limiterWindow, that key must wait, starting
// at limiterBase and doubling up to limiterMax with each further failure.
// A success clears the user's record. At most limiterEntries keys are
// remembered (the oldest are forgotten), so the limiter's memory is bounded
// whatever names an attacker tries.
const (
	limiterFree    = 5
	limiterWindow  = time.Minute
	limiterBase    = time.Second
	limiterMax     = 30 * time.Second
	limiterEntries = 10_000
)

// ErrTooManyFailures refuses a login while its user or address waits.
var ErrTooManyFailures = fmt.Errorf("too many failed logins")

type failures struct {
	count int
	first time.Time
	until time.Time
}

// Limiter throttles failed logins. Safe for concurrent use.
type Limiter struct {
	mu   sync.Mutex
	keys map[string]*failures
}

// NewLimiter returns an empty limiter.
func NewLimiter() *Limiter { return &Limiter{keys: map[string]*failures{}} }

// Check returns ErrTooManyFailures (wrapped with the wait) when user or
// addr must wait before trying again.
func (l *Limiter) Check(user, addr string, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range []string{"u:" + user, "a:" + addr} {
		if f, ok := l.keys[k]; ok && now.Before(f.until) {
			return fmt.Errorf("%w: retry in %v", ErrTooManyFailures, f.until.Sub(now).Round(time.Second))
		}
	}
	return nil
}

// Failed records a failed login of user from addr.
func (l *Limiter) Failed(user, addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range []string{"u:" + user, "a:" + addr} {
		f, ok := l.keys[k]
		if !ok || now.Sub(f.first) > limiterWindow && now.After(f.until) {
			if !ok && len(l.keys) >= limiterEntries {
				l.forgetOldest()
			}
			f = &failures{first: now}
			l.keys[k] = f
		}
		f.count++
		if f.count > limiterFree {
			wait := limiterBase << min(f.count-limiterFree-1, 5)
			f.until = now.Add(min(wait, limiterMax))
		}
	}
}

// Succeeded clears user's failures (the address keeps its own).
func (l *Limiter) Succeeded(user string) {
	l.mu.Lock()
	delete(l.keys, "u:"+user)
	l.mu.Unlock()
}

func (l *Limiter) forgetOldest() {
	var oldest string
	var at time.Time
	for k, f := range l.keys {
		if oldest == "" || f.first.Before(at) {
			oldest, at = k, f.first
		}
	}
	delete(l.keys, oldest)
}
