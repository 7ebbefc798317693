#!/usr/bin/env bash
# Builds the images the real-node cluster needs into the local Docker engine,
# under payments-local/ (never an upstream name: no registry answers here, and
# an impostor under an upstream name would prove nothing):
#
#   payments-local/pause:1.0            the pod sandbox (images/pause, static Go)
#   payments-local/coredns:<version>    CoreDNS from ../coredns, built by build.sh
#
#   test/kube/images/build.sh [BIN_DIR]   (default: <repo>/.cache/kube/bin)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
kube="$(cd "$here/.." && pwd)"
root="$(cd "$kube/../.." && pwd)"
bin="${1:-${KUBE_BIN:-$root/.cache/kube/bin}}"
bin="$(cd "$bin" && pwd)"

coredns_version="$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3}' "$kube/coredns/go.mod")"
[[ -n "$coredns_version" && -x "$bin/coredns" ]] || { echo "cluster-images: run make kube-tools first" >&2; exit 1; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

(cd "$kube" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ctx/pause/pause" ./images/pause)
cp "$here/pause/Dockerfile" "$ctx/pause/"
docker build -q -t payments-local/pause:1.0 "$ctx/pause"

mkdir -p "$ctx/coredns"
cp "$bin/coredns" "$here/coredns/Dockerfile" "$ctx/coredns/"
docker build -q -t "payments-local/coredns:${coredns_version#v}" "$ctx/coredns"
