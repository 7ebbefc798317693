// Package failover owns the exactly-once proof under Redis failovers: real
// redis-server and redis-sentinel processes on their own loopback addresses,
// two real payments-svc replicas, a load that retries with the same keys,
// faults (crashes, partitions cut with iptables, SIGSTOP, restarts) and the
// history checker in package history judging what the clients were told
// against what the store holds afterwards. The suite needs root for
// iptables and runs with the build tag failover (make test-failover).
package failover
