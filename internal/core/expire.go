package core

import (
	"context"
	"time"

	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// Expiry is decided by the leader alone and proposed through the log, so
// every replica deletes the same keys at the same index. The expiry loop
// runs on every node and acts only while the node leads: every
// expireInterval it proposes the revoke of each lease whose deadline passed
// (lease.go) and, once it has led for one election timeout (a key's
// deadline was fixed by a clock that may run ahead of this one; the margin
// keeps a failover from expiring keys early), the expiry of keys whose
// deadline passed, in batches of expireMaxKeys keys, each applied before
// the next is chosen.
const (
	expireInterval    = 50 * time.Millisecond
	expireMaxKeys     = 2048
	expireMaxCycles   = 64
	expireMaxRevokes  = 256
	expireProposeWait = 5 * time.Second
)

// nowMillis is the local clock in unix milliseconds.
func nowMillis() int64 { return time.Now().UnixMilli() }

// DeadlineAfter is the deadline, in unix milliseconds, of a TTL that
// starts now. A key counts as expired once the clock's whole milliseconds
// reach its deadline, so the deadline is rounded up: a key never goes
// before its TTL has passed (truncating made keys vanish up to a
// millisecond early).
func DeadlineAfter(ttl time.Duration) int64 {
	return millisUp(time.Now().Add(ttl))
}

// millisUp is t in unix milliseconds, rounded up.
func millisUp(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.Sub(time.UnixMilli(ms)) > 0 {
		ms++
	}
	return ms
}

// ExpiredKeys is the number of keys expired on this node since it started.
func (c *Core) ExpiredKeys() uint64 { return c.store.ExpiredKeys() }

// expireLoop is the expiry driver.
func (c *Core) expireLoop() {
	defer c.wg.Done()
	t := time.NewTicker(expireInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stopC:
			return
		case <-t.C:
		}
		c.expireOnce(time.Now())
	}
}

// expireOnce runs one round of the expiry driver at now.
func (c *Core) expireOnce(now time.Time) {
	if c.leaderTerm(now) == 0 {
		return
	}
	c.revokeDue(now)
	c.lessor.mu.Lock()
	since := c.lessor.since
	c.lessor.mu.Unlock()
	if now.Sub(since) < c.node.ElectionTimeout() {
		return
	}
	for range expireMaxCycles {
		keys := c.store.DueKeys(now.UnixMilli(), expireMaxKeys)
		if len(keys) == 0 {
			return
		}
		data, err := command.EncodeExpire(keys)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), expireProposeWait)
		_, err = c.proposeAlone(ctx, data)
		cancel()
		if err != nil {
			c.log.Debug("expiry cycle failed", "err", err)
			return
		}
		if len(keys) < expireMaxKeys {
			return
		}
	}
}

// revokeDue proposes the revoke of every lease whose deadline passed, at
// most expireMaxRevokes a round, all in flight together.
func (c *Core) revokeDue(now time.Time) {
	ids := c.dueLeases(now, expireMaxRevokes)
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), expireProposeWait)
	defer cancel()
	props := make([]*raftnode.Proposal, 0, len(ids))
	for _, id := range ids {
		data, err := command.EncodeLeaseRevoke(id, true)
		if err != nil {
			continue
		}
		p, err := c.node.Enqueue(data)
		if err != nil {
			c.log.Debug("lease revoke failed", "lease", id, "err", err)
			break
		}
		props = append(props, p)
	}
	for _, p := range props {
		_, _ = p.Wait(ctx)
	}
}
