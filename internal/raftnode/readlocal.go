package raftnode

import "go.etcd.io/raft/v3"

// Local reads on a lone voter.
//
// When the configuration has exactly one voter, its leader needs no one to
// confirm its leadership: a read may use the commit index, once that is at
// or past leaderFrom, the leader's first entry of its term (the same floor
// readLoop.resolve puts under raft's own answer). The raft loop publishes
// that index in localRead after every iteration, so a reader can use it
// without the round trip through the raft loop's channels.
//
// Why the index may be a little old: every acknowledged write was applied
// before it was acknowledged, and the apply loop's state only grows, so a
// read of the applied state at or after localRead sees every write
// acknowledged before the read began. The index matters only after a
// restart or an election, where committed entries of earlier terms may not
// be applied yet, or not even committed again (resolve says why); they all
// precede leaderFrom.
//
// localRead drops to 0 (readers take the raft loop's path) the moment a
// membership change is applied to raft or the raft state changes, and is
// computed again on the next iteration.
func (n *Node) publishLocalRead() {
	if n.soloDirty {
		n.solo = n.singleVoter()
		n.soloDirty = false
	}
	var index uint64
	if n.solo && n.leaderFrom != 0 && raft.StateType(n.state.Load()) == raft.StateLeader {
		if commit := n.commit.Load(); commit >= n.leaderFrom {
			index = commit
		}
	}
	n.localRead.Store(index)
}

// ReadableNow reports whether a linearizable read may be served from the
// local state at once: this node is a lone voter's leader whose apply loop
// has reached its local read index. When it is false, ReadIndex is the way.
func (n *Node) ReadableNow() bool {
	index := n.localRead.Load()
	return index != 0 && n.reads.applied.Load() >= index
}
