package raftnode

import "errors"

var (
	// ErrStopped is returned by calls made while or after the node stops.
	ErrStopped = errors.New("raftnode: node stopped")
	// ErrOverloaded is returned when a bounded queue (pending proposals,
	// proposal channel, read waiters, apply backlog) is full.
	ErrOverloaded = errors.New("raftnode: too many pending requests")
	// ErrProposalDropped is returned when raft refused a proposal, typically
	// because there is no leader or a leader transfer is in progress.
	ErrProposalDropped = errors.New("raftnode: proposal dropped (no leader)")
	// ErrLeaderChanged is returned to proposals pending when the leader
	// changed: they may or may not have been applied.
	ErrLeaderChanged = errors.New("raftnode: leader changed; the request may or may not have been applied")
	// ErrNoLeader is returned by linearizable reads when no leader is known.
	ErrNoLeader = errors.New("raftnode: no leader")
)
