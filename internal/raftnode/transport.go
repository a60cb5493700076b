package raftnode

import (
	"context"
	"io"

	"go.etcd.io/raft/v3/raftpb"
)

// Transport carries raft messages between members. Send must never block
// the raft loop: implementations queue per peer, drop on overflow and report
// the peer unreachable to the Host. MsgSnap messages are sent as a stream:
// the snapshot body is read from Host.OpenSnapshot in chunks and handed to
// the receiver's Host.ReceiveSnapshot, and the outcome goes to
// Host.ReportSnapshot. Send is called from the raft loop and from the WAL
// goroutine (responses released once durable), possibly at the same time,
// and must be safe for that. The caller owns msgs only during Send;
// implementations that keep a message must not modify it.
type Transport interface {
	// Start gives the transport its host; called once, before any Send.
	Start(h Host) error
	Send(msgs []*raftpb.Message)
	// AddPeer and RemovePeer keep the transport's address book in step with
	// the membership. They may be called from any goroutine.
	AddPeer(id uint64, address string)
	RemovePeer(id uint64)
	Close() error
}

// Host is the node side of a transport. Node implements it.
type Host interface {
	ID() uint64
	ClusterID() uint64
	// Peer returns the member id when it may send this node raft traffic
	// now; transports refuse messages from anyone else.
	Peer(id uint64) (Member, bool)
	// Step hands a received message to raft.
	Step(ctx context.Context, m *raftpb.Message) error
	// ReceiveSnapshot stores a snapshot streamed by the leader and then
	// steps its MsgSnap.
	ReceiveSnapshot(ctx context.Context, m *raftpb.Message, body io.Reader) error
	// OpenSnapshot opens the body of the local snapshot at index.
	OpenSnapshot(index uint64) (io.ReadCloser, error)
	// ReportUnreachable and ReportSnapshot never block, so a transport may
	// call them from Send, on the raft loop.
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, failed bool)
	// ClientAddress is this member's client address, which a transport
	// may pass to peers; SetPeerClientAddress records one a peer passed.
	ClientAddress() string
	SetPeerClientAddress(id uint64, address string)
}

// nopTransport is the transport of a single voter: nobody to talk to.
type nopTransport struct{}

func (nopTransport) Start(Host) error       { return nil }
func (nopTransport) Send([]*raftpb.Message) {}
func (nopTransport) AddPeer(uint64, string) {}
func (nopTransport) RemovePeer(uint64)      {}
func (nopTransport) Close() error           { return nil }
