//go:build invariants

package fsm

import (
	"fmt"

	"github.com/kvdb/kvdb/internal/engine"
)

// invariants is on: builds with -tags invariants (make test) check the
// store's consistency after every restore and eviction and after every
// invariantSample-th apply, and stop the process on a violation.
const invariants = true

const invariantSample = 64

func checkInvariants(s *engine.Store, after string) {
	if msg := s.CheckConsistency(); msg != "" {
		panic(fmt.Sprintf("fsm: engine invariant violated after %s at applied index %d: %s", after, s.AppliedIndex(), msg))
	}
}

// invariantKeysPerCheck thins the apply sample: one more factor of
// invariantSample per this many keys in the store.
const invariantKeysPerCheck = 1024
