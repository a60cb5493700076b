// Package bench is KVDB's load generator. `kvdbctl bench`, the shell's
// BENCHMARK command and the harness behind `make benchmark`, `make
// load-test`, `make stress-test` and `make bench-compare` all run the same
// loop (Run) against a Driver: KVDB over either transport (NewKVDB), or
// another database behind the same interface, so every system sees the same
// shape of load.
//
// # Concurrency
//
// Run starts Clients workers, each keeping Pipeline requests in flight
// (through a Pipeliner when the Driver is one, else on Pipeline goroutines
// of synchronous calls). A Driver must be safe for concurrent use. Every
// worker records into its own Histogram; they are merged once at the end,
// so the hot path shares nothing but two atomic counters.
//
// # Invariants
//
// A run is always bounded: by Config.Total operations, by Config.Duration,
// and, when neither is set, by DefaultDuration; with only Total set it is
// still cut off after MaxDuration. Latencies are kept in a fixed-size
// log-linear histogram (under 1% relative error), so memory does not grow
// with the length of a run. A worker whose request failed with UNAVAILABLE
// pauses before its next one (firstPause, doubled per failure in a row up
// to maxPause), so a failing node is not hammered; the KVDB driver's client
// meanwhile looks for the leader again and follows it.
package bench
