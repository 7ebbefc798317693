// Package integration proves payments-svc's exactly-once promise against real
// redis-server processes (single node, AOF, Cluster) and the real server
// binary run as several replicas. Its tests carry the build tag integration:
// run them with `make test-integration`. They need redis-server and redis-cli
// on PATH and listen on 127.0.0.1 only, on ports chosen at runtime.
package integration
