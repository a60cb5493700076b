package raftnode

import (
	"errors"
	"fmt"

	"github.com/kvdb/kvdb/internal/raftnode/wal"
)

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
	// ErrNoSpace matches every *DiskFullError: writes refused because the
	// data dir's file system is full.
	ErrNoSpace = errors.New("raftnode: no space left on device")
)

// DiskFullError is what writes get while the data dir's file system is
// full (see doc.go, "A full disk"). Err is the write that failed.
type DiskFullError struct {
	Dir string
	Err error
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("raftnode: data dir %s: no space left on device; writes are refused until space is freed (reads are still served)", e.Dir)
}

// Is makes errors.Is(err, ErrNoSpace) hold.
func (e *DiskFullError) Is(target error) bool { return target == ErrNoSpace }
func (e *DiskFullError) Unwrap() error        { return e.Err }

// IsNoSpace reports whether err comes from a full file system (ENOSPC or
// EDQUOT), directly or through the WAL or a *DiskFullError.
func IsNoSpace(err error) bool {
	return errors.Is(err, ErrNoSpace) || wal.IsNoSpace(err)
}
