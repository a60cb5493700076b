package engine

// ApplyEachWith is ApplyEach for groups whose ops depend on the store:
// ops(g, get) returns group g's ops, and get reads the store as the groups
// before g left it. The state machine computes read-modify-writes coalesced
// with other writes this way, all under one write lock, so no reader sees
// a group half applied and every replica computes the same ops.
func (s *Store) ApplyEachWith(index uint64, n int, ops func(g int, get func(key []byte) (KeyValue, bool)) []Op) ([]Result, bool) {
	if index <= s.applied.Load() {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	get := func(key []byte) (KeyValue, bool) {
		e, ok := s.m.getBytes(key)
		if !ok {
			return KeyValue{}, false
		}
		return e.kv(false), true
	}
	results := make([]Result, n)
	for g := range n {
		group := ops(g, get)
		res := make([]OpResult, len(group))
		s.applyLocked(group, res)
		results[g] = Result{Revision: s.rev.Load(), Ops: res}
	}
	s.applied.Store(index)
	return results, true
}
