package service

import (
	"errors"
	"sync/atomic"
)

// DefaultMaxInFlightRequests is the node-wide cap on KV and transaction
// requests being served at once (-max-inflight-requests).
const DefaultMaxInFlightRequests = 10_000

// ErrOverloaded answers a request that arrived while the node was already
// serving its cap of requests: RESOURCE_EXHAUSTED, sent at once, so a client
// under overload learns to back off in microseconds instead of queueing
// until its deadline and so the node's memory stays bounded.
var ErrOverloaded = errors.New("service: too many requests in flight, retry later")

// admission is the node-wide in-flight gate, shared by the gRPC interceptor
// and the binary protocol. Admin, health and raft traffic do not pass it, so
// an overloaded node still elects, replicates and answers STATUS. Safe for
// concurrent use; a nil or non-positive limit admits everything.
type admission struct {
	limit    int64
	inflight atomic.Int64
	rejected atomic.Int64
}

func newAdmission(limit int) *admission { return &admission{limit: int64(limit)} }

// acquire admits one request, or counts it as rejected and returns false.
// Every true must be paired with one release.
func (a *admission) acquire() bool {
	if a.limit <= 0 {
		return true
	}
	if a.inflight.Add(1) > a.limit {
		a.inflight.Add(-1)
		a.rejected.Add(1)
		return false
	}
	return true
}

func (a *admission) release() {
	if a.limit > 0 {
		a.inflight.Add(-1)
	}
}
