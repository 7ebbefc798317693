// Package bench owns the performance measurements of payments-svc: Go
// micro-benchmarks of the hot path (micro_test.go), the no-op gRPC server
// that sets the gRPC floor (bench/noop) and the load-test driver behind
// `make bench` (bench/run). None of it is part of the pass/fail suite; the
// results and how to read them are in BENCHMARKS.md.
package bench
