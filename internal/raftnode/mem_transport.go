package raftnode

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// MemNetwork connects in-process nodes for tests, with controls to cut,
// drop and delay traffic between them. Messages on one link are delivered
// in order by one goroutine per link. Safe for concurrent use.
type MemNetwork struct {
	mu     sync.Mutex
	hosts  map[uint64]Host
	links  map[[2]uint64]*memLink
	cut    map[[2]uint64]bool
	drop   float64
	delay  time.Duration
	rng    *rand.Rand
	closed bool
}

// NewMemNetwork returns an empty network; seed drives its random drops.
func NewMemNetwork(seed uint64) *MemNetwork {
	return &MemNetwork{
		hosts: make(map[uint64]Host),
		links: make(map[[2]uint64]*memLink),
		cut:   make(map[[2]uint64]bool),
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

// Transport returns the transport of member id.
func (n *MemNetwork) Transport(id uint64) Transport { return &memTransport{net: n, id: id} }

// Isolate cuts every link to and from id.
func (n *MemNetwork) Isolate(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for other := range n.hosts {
		if other != id {
			n.cut[[2]uint64{id, other}] = true
			n.cut[[2]uint64{other, id}] = true
		}
	}
}

// Partition cuts every link between members of different groups; members
// not named keep their links.
func (n *MemNetwork) Partition(groups ...[]uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	group := make(map[uint64]int)
	for i, g := range groups {
		for _, id := range g {
			group[id] = i
		}
	}
	for a, ga := range group {
		for b, gb := range group {
			if ga != gb {
				n.cut[[2]uint64{a, b}] = true
			}
		}
	}
}

// Cut cuts the link from one member to another (one direction).
func (n *MemNetwork) Cut(from, to uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[[2]uint64{from, to}] = true
}

// Heal restores every link and stops dropping and delaying.
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
	n.drop, n.delay = 0, 0
}

// SetDrop drops each message with probability p.
func (n *MemNetwork) SetDrop(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drop = p
}

// SetDelay delays every delivery by d.
func (n *MemNetwork) SetDelay(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delay = d
}

// Close stops every link.
func (n *MemNetwork) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for k, l := range n.links {
		close(l.stopC)
		delete(n.links, k)
	}
}

// deliverable reports whether a message from -> to passes now.
func (n *MemNetwork) deliverable(from, to uint64) (Host, time.Duration, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.hosts[to]
	if !ok || n.cut[[2]uint64{from, to}] || n.closed {
		return nil, 0, false
	}
	if n.drop > 0 && n.rng.Float64() < n.drop {
		return nil, 0, false
	}
	return h, n.delay, true
}

func (n *MemNetwork) link(from, to uint64) *memLink {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	k := [2]uint64{from, to}
	l, ok := n.links[k]
	if !ok {
		l = &memLink{net: n, from: from, to: to, queue: make(chan *raftpb.Message, peerQueueSize), stopC: make(chan struct{})}
		n.links[k] = l
		go l.run()
	}
	return l
}

type memLink struct {
	net      *MemNetwork
	from, to uint64
	queue    chan *raftpb.Message
	stopC    chan struct{}
}

func (l *memLink) run() {
	for {
		select {
		case m := <-l.queue:
			h, delay, ok := l.net.deliverable(l.from, l.to)
			if !ok {
				continue
			}
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-l.stopC:
					return
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = h.Step(ctx, m)
			cancel()
		case <-l.stopC:
			return
		}
	}
}

type memTransport struct {
	net  *MemNetwork
	id   uint64
	host Host
	wg   sync.WaitGroup
}

func (t *memTransport) Start(h Host) error {
	t.host = h
	t.net.mu.Lock()
	t.net.hosts[t.id] = h
	t.net.mu.Unlock()
	return nil
}

func (t *memTransport) AddPeer(uint64, string) {}
func (t *memTransport) RemovePeer(uint64)      {}

func (t *memTransport) Send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		// The receiver must not share memory with the sender's raft.
		m = proto.Clone(m).(*raftpb.Message)
		if m.GetType() == raftpb.MessageType_MsgSnap {
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				t.sendSnapshot(m)
			}()
			continue
		}
		l := t.net.link(t.id, m.GetTo())
		if l == nil {
			continue
		}
		select {
		case l.queue <- m:
		default:
			t.host.ReportUnreachable(m.GetTo())
		}
	}
}

func (t *memTransport) sendSnapshot(m *raftpb.Message) {
	to := m.GetTo()
	h, _, ok := t.net.deliverable(t.id, to)
	failed := true
	if ok {
		body, err := t.host.OpenSnapshot(m.GetSnapshot().GetMetadata().GetIndex())
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			failed = h.ReceiveSnapshot(ctx, m, body) != nil
			cancel()
			body.Close()
		}
	}
	t.host.ReportSnapshot(to, failed)
}

// Close detaches this member: others can no longer reach it.
func (t *memTransport) Close() error {
	t.net.mu.Lock()
	if t.net.hosts[t.id] == t.host {
		delete(t.net.hosts, t.id)
	}
	for k, l := range t.net.links {
		if k[0] == t.id {
			close(l.stopC)
			delete(t.net.links, k)
		}
	}
	t.net.mu.Unlock()
	t.wg.Wait()
	return nil
}
