package raftnode

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
)

// Member is a cluster member: its raft id, name (-node-id), client address
// and, when it serves raft traffic on a listener of its own, peer address.
type Member struct {
	ID          uint64
	Name        string
	Address     string
	PeerAddress string
}

// PeerAddr is where peers send this member raft traffic.
func (m Member) PeerAddr() string {
	if m.PeerAddress != "" {
		return m.PeerAddress
	}
	return m.Address
}

func memberFromProto(mem *raftv1.Member) Member {
	return Member{ID: mem.GetId(), Name: mem.GetName(), Address: mem.GetAddress(), PeerAddress: mem.GetPeerAddress()}
}

func memberToProto(m Member) *raftv1.Member {
	return &raftv1.Member{Id: m.ID, Name: m.Name, Address: m.Address, PeerAddress: m.PeerAddress}
}

// maxMembersSection bounds the membership section of a snapshot body.
const maxMembersSection = 16 << 20

// membership is the table of members' names and addresses. Raft's
// ConfState knows only ids; names and addresses travel in the context of
// membership-change entries and in snapshots. The apply loop updates it in
// log order, so a snapshot's table matches its index exactly. Safe for
// concurrent use.
type membership struct {
	mu      sync.RWMutex
	members map[uint64]Member
	removed map[uint64]bool
	voters  map[uint64]bool
	learner map[uint64]bool
}

func newMembership() *membership {
	return &membership{
		members: make(map[uint64]Member),
		removed: make(map[uint64]bool),
		voters:  make(map[uint64]bool),
		learner: make(map[uint64]bool),
	}
}

func (m *membership) get(id uint64) (Member, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	mem, ok := m.members[id]
	return mem, ok
}

func (m *membership) isRemoved(id uint64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.removed[id]
}

// apply records one committed membership change and the ConfState after it.
func (m *membership) apply(cc *raftpb.ConfChange, cs *raftpb.ConfState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(cc.GetContext()) > 0 {
		var mem raftv1.Member
		if err := proto.Unmarshal(cc.GetContext(), &mem); err == nil && mem.GetId() == cc.GetNodeId() {
			m.members[mem.GetId()] = memberFromProto(&mem)
		}
	}
	if cc.GetType() == raftpb.ConfChangeType_ConfChangeRemoveNode {
		m.removed[cc.GetNodeId()] = true
	} else {
		delete(m.removed, cc.GetNodeId())
	}
	m.setConfState(cs)
}

func (m *membership) setConfState(cs *raftpb.ConfState) {
	clear(m.voters)
	clear(m.learner)
	for _, id := range cs.GetVoters() {
		m.voters[id] = true
	}
	for _, id := range cs.GetLearners() {
		m.learner[id] = true
	}
}

// list returns the current members (voters and learners), sorted by name.
func (m *membership) list() []MemberStatus {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []MemberStatus
	for id := range m.voters {
		out = append(out, MemberStatus{Member: m.memberLocked(id)})
	}
	for id := range m.learner {
		out = append(out, MemberStatus{Member: m.memberLocked(id), Learner: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (m *membership) memberLocked(id uint64) Member {
	if mem, ok := m.members[id]; ok {
		return mem
	}
	return Member{ID: id, Name: fmt.Sprintf("%x", id)}
}

func (m *membership) encode() *raftv1.MemberList {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l := &raftv1.MemberList{}
	ids := make([]uint64, 0, len(m.members))
	for id := range m.members {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		mem := m.members[id]
		l.Members = append(l.Members, memberToProto(mem))
	}
	for id := range m.removed {
		l.Removed = append(l.Removed, id)
	}
	sort.Slice(l.Removed, func(i, j int) bool { return l.Removed[i] < l.Removed[j] })
	return l
}

func (m *membership) restore(l *raftv1.MemberList, cs *raftpb.ConfState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.members)
	clear(m.removed)
	for _, mem := range l.GetMembers() {
		m.members[mem.GetId()] = memberFromProto(mem)
	}
	for _, id := range l.GetRemoved() {
		m.removed[id] = true
	}
	m.setConfState(cs)
}

// MemberStatus is a member with its role.
type MemberStatus struct {
	Member
	Learner bool
}

// encodeMemberContext is the context of a membership-change entry.
func encodeMemberContext(m Member) []byte {
	b, err := proto.Marshal(memberToProto(m))
	if err != nil {
		panic(fmt.Sprintf("raftnode: encode member: %v", err))
	}
	return b
}

// A snapshot body is the membership section (uvarint length, MemberList)
// followed by the state machine's own stream.
func writeMembersSection(w io.Writer, l *raftv1.MemberList) error {
	b, err := proto.Marshal(l)
	if err != nil {
		return err
	}
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// readMembersSection reads the membership section and returns a reader
// positioned at the state machine's stream.
func readMembersSection(r io.Reader) (*raftv1.MemberList, io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	size, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, nil, fmt.Errorf("raftnode: snapshot membership section: %w", err)
	}
	if size > maxMembersSection {
		return nil, nil, fmt.Errorf("raftnode: snapshot membership section of %d bytes is over the %d limit", size, maxMembersSection)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, nil, fmt.Errorf("raftnode: snapshot membership section: %w", err)
	}
	var l raftv1.MemberList
	if err := proto.Unmarshal(b, &l); err != nil {
		return nil, nil, fmt.Errorf("raftnode: snapshot membership section: %w", err)
	}
	return &l, br, nil
}

// isMember is true for a current voter or learner.
func (m *membership) isMember(id uint64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.voters[id] || m.learner[id]
}
