package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
)

const (
	// peerQueueSize bounds the messages waiting for one peer. A full queue
	// means the peer is slow or gone: messages are dropped and raft, told
	// the peer is unreachable, probes and retransmits.
	peerQueueSize = 4096
	// maxBatchBytes bounds one StreamRequest.
	maxBatchBytes = 4 << 20
	// maxBatchMessages bounds the messages of one StreamRequest: a sender
	// puts at most this many in one, and a receiver refuses a request with
	// more before it decodes them (an empty message is two bytes on the
	// wire and a few hundred decoded).
	maxBatchMessages = peerQueueSize
	// snapshotChunkSize is the size of one snapshot piece on the wire.
	snapshotChunkSize = 1 << 20
	minBackoff        = 50 * time.Millisecond
	maxBackoff        = 2 * time.Second
)

// GRPCTransport sends raft messages over one RaftService.Stream per peer on
// the peers' peer address (their client port in the one-port form), and
// serves the same service for incoming traffic, which it authenticates and
// validates (peer_auth.go) before raft sees a message. Safe for concurrent
// use.
type GRPCTransport struct {
	raftv1.UnimplementedRaftServiceServer
	log *slog.Logger
	sec PeerSecurity
	// refusals counts refused streams; the first and every 100th are logged.
	refusals atomic.Int64

	mu     sync.Mutex
	host   Host
	peers  map[uint64]*grpcPeer
	closed bool
	wg     sync.WaitGroup
}

var _ Transport = (*GRPCTransport)(nil)

// NewGRPCTransport returns a transport that authenticates peers as sec
// says; register it on the gRPC server of the node's peer listener with
// raftv1.RegisterRaftServiceServer.
func NewGRPCTransport(log *slog.Logger, sec PeerSecurity) *GRPCTransport {
	if log == nil {
		log = slog.Default()
	}
	return &GRPCTransport{log: log.With("component", "transport"), sec: sec, peers: make(map[uint64]*grpcPeer)}
}

// dialCreds are the transport credentials for dialling peers.
func (t *GRPCTransport) dialCreds() grpc.DialOption {
	if t.sec.TLS != nil {
		return grpc.WithTransportCredentials(credentials.NewTLS(t.sec.TLS.Clone()))
	}
	return grpc.WithTransportCredentials(insecure.NewCredentials())
}

func (t *GRPCTransport) Start(h Host) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.host = h
	for _, p := range t.peers {
		t.startPeer(p)
	}
	return nil
}

// AddPeer starts (or re-addresses) the sender for a peer.
func (t *GRPCTransport) AddPeer(id uint64, address string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p, ok := t.peers[id]; ok {
		if p.address == address {
			return
		}
		p.stop()
	}
	p := &grpcPeer{t: t, id: id, address: address,
		queue: make(chan *raftpb.Message, peerQueueSize), snapC: make(chan *raftpb.Message, 1), stopC: make(chan struct{})}
	t.peers[id] = p
	if t.host != nil {
		t.startPeer(p)
	}
}

func (t *GRPCTransport) startPeer(p *grpcPeer) {
	if p.started {
		return
	}
	p.started = true
	t.wg.Add(2)
	go p.run()
	go p.runSnapshots()
}

func (t *GRPCTransport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		p.stop()
		delete(t.peers, id)
	}
}

// Send queues messages for their peers without blocking.
func (t *GRPCTransport) Send(msgs []*raftpb.Message) {
	if len(msgs) == 0 {
		return
	}
	t.mu.Lock()
	host := t.host
	defer t.mu.Unlock()
	for _, m := range msgs {
		p, ok := t.peers[m.GetTo()]
		if !ok {
			continue
		}
		if m.GetType() == raftpb.MessageType_MsgSnap {
			select {
			case p.snapC <- m:
			default:
				host.ReportSnapshot(m.GetTo(), true)
			}
			continue
		}
		select {
		case p.queue <- m:
		default:
			host.ReportUnreachable(m.GetTo())
		}
	}
}

func (t *GRPCTransport) Close() error {
	t.mu.Lock()
	t.closed = true
	for id, p := range t.peers {
		p.stop()
		delete(t.peers, id)
	}
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}

// grpcPeer owns the outgoing stream to one peer.
type grpcPeer struct {
	t        *GRPCTransport
	id       uint64
	address  string
	queue    chan *raftpb.Message
	snapC    chan *raftpb.Message
	stopC    chan struct{}
	stopOnce sync.Once
	started  bool
}

func (p *grpcPeer) stop() { p.stopOnce.Do(func() { close(p.stopC) }) }

func (p *grpcPeer) ctx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-p.stopC:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// run keeps a stream open to the peer and writes queued messages to it,
// batching what is queued. Messages taken while the peer is unreachable
// are dropped; raft retransmits.
func (p *grpcPeer) run() {
	defer p.t.wg.Done()
	ctx, cancel := p.ctx()
	defer cancel()
	conn, err := grpc.NewClient(p.address, p.t.dialCreds(),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(maxBatchBytes+(1<<20))))
	if err != nil {
		p.t.log.Error("bad peer address", "peer", fmt.Sprintf("%x", p.id), "address", p.address, "err", err)
		return
	}
	defer conn.Close()
	client := raftv1.NewRaftServiceClient(conn)
	host := p.t.host
	backoff := minBackoff
	failures := 0
	for ctx.Err() == nil {
		err := p.stream(ctx, client, host)
		if ctx.Err() != nil {
			return
		}
		failures++
		if failures == 1 || failures%50 == 0 {
			p.t.log.Warn("peer unreachable", "peer", fmt.Sprintf("%x", p.id), "address", p.address, "err", err, "failures", failures)
		}
		host.ReportUnreachable(p.id)
		// Drop what queued up while the peer was away.
		for drained := false; !drained; {
			select {
			case <-p.queue:
			default:
				drained = true
			}
		}
		select {
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// stream sends until the stream breaks.
func (p *grpcPeer) stream(ctx context.Context, client raftv1.RaftServiceClient, host Host) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := client.Stream(p.t.withToken(sctx, host, p.id), grpc.ForceCodecV2(StreamCodec))
	if err != nil {
		return err
	}
	// The receiver only answers to refuse the stream.
	refused := make(chan error, 1)
	go func() {
		resp, err := s.Recv()
		if err == nil && resp.GetError() != "" {
			err = errors.New(resp.GetError())
		}
		refused <- err
		cancel()
	}()
	// The first request also tells the peer where clients reach us.
	batch := &outBatch{clusterID: host.ClusterID(), from: host.ID(), clientAddress: host.ClientAddress()}
	for {
		var m *raftpb.Message
		select {
		case m = <-p.queue:
		case err := <-refused:
			if rh, ok := host.(removalHost); ok && err != nil && strings.HasPrefix(err.Error(), removedMarker) {
				rh.RemovedByPeer(p.id)
			}
			return fmt.Errorf("stream closed by peer: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
		for m != nil {
			batch.add(m)
			m = nil
			if batch.bytes < maxBatchBytes && len(batch.msgs) < maxBatchMessages {
				select {
				case m = <-p.queue:
				default:
				}
			}
		}
		// StreamCodec encodes the batch while SendMsg runs.
		err := s.SendMsg(batch)
		batch.reset()
		if err != nil {
			return err
		}
		batch.clientAddress = ""
	}
}

// removedMarker starts the error a member answers a removed member's
// stream with; the removed member then shuts itself down (it may never
// apply its own removal: the leader stops replicating to it).
const removedMarker = "removed from the cluster: member"

// removalHost is implemented by Node.
type removalHost interface {
	IsRemoved(id uint64) bool
	RemovedByPeer(peer uint64)
}

// runSnapshots streams MsgSnap snapshots to the peer, one at a time.
func (p *grpcPeer) runSnapshots() {
	defer p.t.wg.Done()
	for {
		select {
		case m := <-p.snapC:
			err := p.sendSnapshot(m)
			if err != nil {
				p.t.log.Warn("sending snapshot failed", "peer", fmt.Sprintf("%x", p.id), "index", m.GetSnapshot().GetMetadata().GetIndex(), "err", err)
			}
			p.t.host.ReportSnapshot(p.id, err != nil)
		case <-p.stopC:
			return
		}
	}
}

func (p *grpcPeer) sendSnapshot(m *raftpb.Message) error {
	host := p.t.host
	index := m.GetSnapshot().GetMetadata().GetIndex()
	body, err := host.OpenSnapshot(index)
	if err != nil {
		return err
	}
	defer body.Close()
	ctx, cancel := p.ctx()
	defer cancel()
	conn, err := grpc.NewClient(p.address, p.t.dialCreds())
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := raftv1.NewRaftServiceClient(conn).Snapshot(p.t.withToken(ctx, host, p.id))
	if err != nil {
		return err
	}
	msg, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	if err := s.Send(&raftv1.SnapshotRequest{ClusterId: host.ClusterID(), Message: msg}); err != nil {
		return err
	}
	buf := make([]byte, snapshotChunkSize)
	start := time.Now()
	var sent int64
	for {
		n, rerr := io.ReadFull(body, buf)
		if n > 0 {
			if err := s.Send(&raftv1.SnapshotRequest{Data: buf[:n]}); err != nil {
				return err
			}
			sent += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	resp, err := s.CloseAndRecv()
	if err != nil {
		return err
	}
	if resp.GetBytes() != sent {
		return fmt.Errorf("peer received %d of %d snapshot bytes", resp.GetBytes(), sent)
	}
	p.t.log.Info("snapshot sent", "peer", fmt.Sprintf("%x", p.id), "index", index, "bytes", sent,
		"duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// checkHeaders runs AuthorizeHeaders for a call the server's tap did not
// check, before the call's first message is read.
func (t *GRPCTransport) checkHeaders(ctx context.Context) error {
	if ctx.Value(headersChecked{}) != nil {
		return nil
	}
	_, err := t.AuthorizeHeaders(ctx)
	return err
}

// Stream receives one peer's raft messages. Its headers must authenticate
// a member before anything is read (AuthorizeHeaders). The first request
// names the sender; the stream is refused unless the sender authenticates
// as that member (peer_auth.go), and every message must come from it, be
// addressed to this node, and come from a current member.
func (t *GRPCTransport) Stream(s raftv1.RaftService_StreamServer) error {
	t.mu.Lock()
	host := t.host
	t.mu.Unlock()
	if host == nil {
		return errors.New("raft transport not started")
	}
	if err := t.checkHeaders(s.Context()); err != nil {
		return err
	}
	from := uint64(0)
	var req inBatch // StreamCodec decodes into it
	for {
		if err := s.RecvMsg(&req); err != nil {
			return err
		}
		if req.clusterID != host.ClusterID() {
			_ = s.Send(&raftv1.StreamResponse{Error: fmt.Sprintf("cluster id mismatch: this member is in cluster %x, the sender in %x", host.ClusterID(), req.clusterID)})
			return nil
		}
		if rh, ok := host.(removalHost); ok && rh.IsRemoved(req.from) {
			_ = s.Send(&raftv1.StreamResponse{Error: fmt.Sprintf("%s %x", removedMarker, req.from)})
			return nil
		}
		if from == 0 {
			from = req.from
			if err := t.authorize(s.Context(), host, from); err != nil {
				return t.refuse(s.Context(), from, err)
			}
		} else if req.from != from {
			return t.refuse(s.Context(), from, errPeerRefused("a stream carries one member's messages"))
		}
		// Only now, with the sender authenticated as from, is the client
		// address it announces (first request of the stream) recorded.
		if a := req.clientAddress; a != "" {
			host.SetPeerClientAddress(from, a)
		}
		for _, m := range req.msgs {
			if err := checkMessage(host, from, m); err != nil {
				return t.refuse(s.Context(), from, err)
			}
			if err := host.Step(s.Context(), m); err != nil {
				return err
			}
		}
	}
}

// Snapshot receives a snapshot from the leader.
func (t *GRPCTransport) Snapshot(s raftv1.RaftService_SnapshotServer) error {
	t.mu.Lock()
	host := t.host
	t.mu.Unlock()
	if host == nil {
		return errors.New("raft transport not started")
	}
	if err := t.checkHeaders(s.Context()); err != nil {
		return err
	}
	first, err := s.Recv()
	if err != nil {
		return err
	}
	if first.GetClusterId() != host.ClusterID() {
		return fmt.Errorf("cluster id mismatch: this member is in cluster %x, the sender in %x", host.ClusterID(), first.GetClusterId())
	}
	m := &raftpb.Message{}
	if err := proto.Unmarshal(first.GetMessage(), m); err != nil || m.GetType() != raftpb.MessageType_MsgSnap {
		return fmt.Errorf("first snapshot chunk does not hold a MsgSnap: %v", err)
	}
	if err := t.authorize(s.Context(), host, m.GetFrom()); err != nil {
		return t.refuse(s.Context(), m.GetFrom(), err)
	}
	if err := checkMessage(host, m.GetFrom(), m); err != nil {
		return t.refuse(s.Context(), m.GetFrom(), err)
	}
	r := &chunkReader{s: s}
	if err := host.ReceiveSnapshot(s.Context(), m, r); err != nil {
		return err
	}
	return s.SendAndClose(&raftv1.SnapshotResponse{Bytes: r.n})
}

// chunkReader reads the data of a snapshot stream.
type chunkReader struct {
	s   raftv1.RaftService_SnapshotServer
	buf []byte
	n   int64
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		c, err := r.s.Recv()
		if err != nil {
			return 0, err // io.EOF at the end of the stream
		}
		r.buf = c.GetData()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.n += int64(n)
	return n, nil
}
