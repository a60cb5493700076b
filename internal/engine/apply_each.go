package engine

// ApplyEach applies groups of ops carried by the one raft entry at index, in
// order, each group atomically at its own revision exactly as if each group
// had been a separate Apply: a group that changes something moves the
// revision by one, a group that changes nothing leaves it. It returns one
// Result per group. This lets the service coalesce independent client writes
// into one log entry without changing what each write observes.
//
// Like Apply, an index <= AppliedIndex() is ignored (ok=false) and invalid
// ops are skipped; it must be called from the single writer goroutine, and
// readers never observe a partially applied group (the write lock is held
// for the whole call).
func (s *Store) ApplyEach(index uint64, groups [][]Op) ([]Result, bool) {
	if index <= s.applied.Load() {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	results := make([]Result, len(groups))
	// One backing array for every group's OpResults: one allocation per
	// entry instead of one per group.
	total := 0
	for _, ops := range groups {
		total += len(ops)
	}
	opResults := make([]OpResult, total)
	for g, ops := range groups {
		res := opResults[:len(ops):len(ops)]
		opResults = opResults[len(ops):]
		s.applyLocked(ops, res)
		results[g] = Result{Revision: s.rev.Load(), Ops: res}
	}
	s.applied.Store(index)
	return results, true
}
