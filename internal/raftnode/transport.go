package raftnode

import (
	"go.etcd.io/raft/v3/raftpb"
)

// Transport carries raft messages to peers. Send must not block the raft
// loop: implementations queue per peer, drop on overflow and report the peer
// unreachable through the Reporter they were built with. The raft loop owns
// msgs only for the duration of the call; implementations that keep a
// message past Send must not modify it.
type Transport interface {
	Send(msgs []*raftpb.Message)
	Close() error
}

// Reporter is how a transport tells raft about delivery failures; Node
// implements it.
type Reporter interface {
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, failed bool)
}

// nopTransport is the transport of a single-voter node: it has no peers, so
// raft never addresses a message to anyone.
type nopTransport struct{}

func (nopTransport) Send([]*raftpb.Message) {}
func (nopTransport) Close() error           { return nil }
