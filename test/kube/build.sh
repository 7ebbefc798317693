#!/usr/bin/env bash
# Builds the pinned control-plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok, helm), the node's (kubelet, kube-proxy,
# coredns) into an ignored cache directory, and
# kwok's default stages next to them. A stamp file records what the binaries were
# built from; when it matches, nothing is rebuilt.
#
#   test/kube/build.sh [BIN_DIR]     (default: <repo>/.cache/kube/bin)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-${KUBE_BIN:-$root/.cache/kube/bin}}"
mkdir -p "$bin"
bin="$(cd "$bin" && pwd)"

# Versions. Kubernetes and etcd are pinned by the go.mod files beside this
# script; kwok and helm are installed from their own modules (their Kubernetes
# libraries are newer than v1.34's, so they cannot share that module graph).
required() { # required MODULE GO_MOD: the version GO_MOD requires
  awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2} $1 == "require" && $2 == m {print $3}' "$2"
}
k8s_version="$(required k8s.io/kubernetes "$here/go.mod")"
etcd_version="$(required go.etcd.io/etcd/server/v3 "$here/etcd/go.mod")"
coredns_version="$(required github.com/coredns/coredns "$here/coredns/go.mod")"
[[ -n "$k8s_version" && -n "$etcd_version" && -n "$coredns_version" ]] || { echo "kube-tools: cannot read pinned versions" >&2; exit 1; }
kwok_version="v0.8.0"
helm_version="v3.22.0"
# The module proxy does not tell which upstream commit a version came from, so
# the commit is all zeros; the build date is the release's module timestamp,
# which keeps the binaries reproducible.
k8s_build_date="2026-02-10T12:53:36Z"

binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd coredns kwok helm)

stamp_file="$bin/.stamp"
stamp="$(
  printf 'kubernetes %s\netcd %s\ncoredns %s\nkwok %s\nhelm %s\n%s\n' \
    "$k8s_version" "$etcd_version" "$coredns_version" "$kwok_version" "$helm_version" "$(go env GOVERSION)"
  cd "$here" && sha256sum build.sh go.mod go.sum etcd/go.mod etcd/go.sum etcd/main.go \
    coredns/go.mod coredns/go.sum coredns/main.go cmd/*/main.go
)"

up_to_date() {
  [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]] || return 1
  for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
  [[ -f "$bin/kwok-stages.yaml" ]]
}

if up_to_date; then
  echo "kube-tools: up to date in $bin (kubernetes $k8s_version, etcd $etcd_version, kwok $kwok_version, helm $helm_version)"
  exit 0
fi
rm -f "$stamp_file"

export CGO_ENABLED=0
start=$SECONDS
step() { echo "kube-tools: $* ($((SECONDS - start))s)"; }

# Both packages carry a copy of the version variables; stamp both, or the
# server reports v0.0.0-master and Helm's kubeVersion checks misbehave.
minor="${k8s_version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=0000000000000000000000000000000000000000"
  ldflags+=" -X $pkg.buildDate=$k8s_build_date"
done

step "building kubernetes $k8s_version (a cold build takes several minutes)"
(cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$bin/" ./cmd/...)

step "building etcd $etcd_version"
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)

step "building coredns $coredns_version"
(cd "$here/coredns" && go build -trimpath -ldflags "-s -w" -o "$bin/coredns" .)

step "building kwok $kwok_version"
GOBIN="$bin" go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$kwok_version" \
  "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"

step "building helm $helm_version"
GOBIN="$bin" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
  "helm.sh/helm/v3/cmd/helm@$helm_version"

# kwok refuses to start without stages. Use the default set that kwok ships
# (kustomize/stage/fast: node initialise + heartbeat with lease, pod ready,
# complete and delete), copied from the pinned module so it matches the binary.
kwok_dir="$(go mod download -json "sigs.k8s.io/kwok@$kwok_version" | awk -F'"' '$2 == "Dir" {print $4}')"
stages="$kwok_dir/kustomize/stage"
{
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    echo "# from sigs.k8s.io/kwok@$kwok_version kustomize/stage/$f"
    cat "$stages/$f"
  done
} >"$bin/kwok-stages.yaml.tmp"
mv "$bin/kwok-stages.yaml.tmp" "$bin/kwok-stages.yaml"

"$bin/kube-apiserver" --version
"$bin/kubectl" version --client=true
printf '%s\n' "$stamp" >"$stamp_file.tmp"
mv "$stamp_file.tmp" "$stamp_file"
step "done: ${binaries[*]} in $bin"
