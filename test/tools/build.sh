#!/usr/bin/env bash
# Builds the tools this project's container and cluster workflows use from
# their Go modules at pinned versions, into an ignored directory:
#
#   test/tools/build.sh [--install-docker-plugins] TOOL...   (compose, buildx, skaffold, grpcurl, jaeger)
#
# Their go.mod files carry replace or exclude directives, so `go install
# pkg@version` is refused; the module is copied out of the module cache and
# built in place. A stamp skips a tool already built at its version.
# --install-docker-plugins links compose and buildx as the user's Docker CLI
# plugins, but only where the docker CLI lacks them.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${TOOLS_BIN:-$root/.cache/tools/bin}"
mkdir -p "$bin"

# name module version package ldflags
spec() {
  case "$1" in
    compose) echo "github.com/docker/compose/v2 v2.40.3 ./cmd -X=github.com/docker/compose/v2/internal.Version=v2.40.3" ;;
    buildx) echo "github.com/docker/buildx v0.38.2 ./cmd/buildx -X=github.com/docker/buildx/version.Version=v0.38.2" ;;
    # The newest skaffold the module proxy serves; it reads skaffold/v4beta13.
    skaffold) echo "github.com/GoogleContainerTools/skaffold/v2 v2.16.1 ./cmd/skaffold -X=github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=v2.16.1" ;;
    grpcurl) echo "github.com/fullstorydev/grpcurl v1.9.4 ./cmd/grpcurl -X=main.version=v1.9.4" ;;
    # Jaeger v2 (an OpenTelemetry Collector distribution) ships from the
    # module's v1.x tags: v1.76.0 is Jaeger v2.13.0 (its CHANGELOG), the
    # version upstream stamps on this binary. make test-tracing runs it.
    jaeger) echo "github.com/jaegertracing/jaeger v1.76.0 ./cmd/jaeger -X=github.com/jaegertracing/jaeger/internal/version.latestVersion=v2.13.0" ;;
    *) echo "tools: unknown tool $1 (compose, buildx, skaffold, grpcurl, jaeger)" >&2; return 1 ;;
  esac
}

build() { # build NAME
  local name="$1" module version pkg ldflags
  read -r module version pkg ldflags < <(spec "$name")
  local out="$bin/$name" stamp="$bin/.$name.stamp" want
  want="$version $(go env GOVERSION)"
  if [[ -x "$out" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
    echo "tools: $name $version is built"
    return
  fi
  echo "tools: building $name $version (a few minutes cold)"
  local dir tmp
  dir="$(go mod download -json "$module@$version" | awk -F'"' '$2 == "Dir" {print $4}')"
  tmp="$(mktemp -d)"
  cp -r "$dir/." "$tmp"
  chmod -R u+w "$tmp"
  (cd "$tmp" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out" "$pkg")
  rm -rf "$tmp"
  echo "$want" >"$stamp"
}

install_plugins=false
if [[ "${1:-}" == "--install-docker-plugins" ]]; then
  install_plugins=true
  shift
fi
for tool in "$@"; do build "$tool"; done

if $install_plugins; then
  plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mkdir -p "$plugins"
  for name in compose buildx; do
    if docker "$name" version >/dev/null 2>&1; then
      echo "tools: docker $name: $(docker "$name" version 2>/dev/null | head -1)"
    else
      ln -sf "$bin/$name" "$plugins/docker-$name"
      echo "tools: installed docker $name as $plugins/docker-$name"
    fi
  done
fi
