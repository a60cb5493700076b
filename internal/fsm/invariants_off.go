//go:build !invariants

package fsm

import "github.com/kvdb/kvdb/internal/engine"

// invariants is off in normal builds; see invariants_on.go.
const invariants = false

const invariantSample = 1

func checkInvariants(*engine.Store, string) {}

const invariantKeysPerCheck = 1
