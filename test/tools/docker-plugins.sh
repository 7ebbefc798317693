#!/usr/bin/env bash
# Builds the Docker CLI plugins this project's workflows use, docker compose
# and docker buildx, from their Go modules at pinned versions, and installs
# them as the current user's CLI plugins when the docker CLI lacks them.
#
#   test/tools/docker-plugins.sh [BIN_DIR]   (default: <repo>/.cache/tools/bin)
#
# Both modules carry replace/exclude directives, so `go install pkg@v` is
# refused; the module is copied out of the module cache and built in place.
set -euo pipefail

compose_version=v2.40.3
buildx_version=v0.38.2

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/.cache/tools/bin}"
mkdir -p "$bin"
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

build() { # build NAME MODULE VERSION PKG LDFLAGS
  local name="$1" module="$2" version="$3" pkg="$4" ldflags="$5"
  local out="$bin/docker-$name" stamp="$bin/.docker-$name.stamp"
  if [[ -x "$out" && "$(cat "$stamp" 2>/dev/null)" == "$version $(go env GOVERSION)" ]]; then
    echo "docker-plugins: $name $version is built"
    return
  fi
  echo "docker-plugins: building $name $version (a few minutes cold)"
  local dir tmp
  dir="$(go mod download -json "$module@$version" | awk -F'"' '$2 == "Dir" {print $4}')"
  tmp="$(mktemp -d)"
  cp -r "$dir/." "$tmp"
  chmod -R u+w "$tmp"
  (cd "$tmp" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out" "$pkg")
  rm -rf "$tmp"
  echo "$version $(go env GOVERSION)" >"$stamp"
}

build compose github.com/docker/compose/v2 "$compose_version" ./cmd \
  "-X github.com/docker/compose/v2/internal.Version=$compose_version"
build buildx github.com/docker/buildx "$buildx_version" ./cmd/buildx \
  "-X github.com/docker/buildx/version.Version=$buildx_version -X github.com/docker/buildx/version.Package=github.com/docker/buildx"

# Install only what the CLI lacks: never replace a plugin the user already has.
mkdir -p "$plugins"
for name in compose buildx; do
  if docker "$name" version >/dev/null 2>&1; then
    echo "docker-plugins: docker $name: $(docker "$name" version 2>/dev/null | head -1)"
  else
    ln -sf "$bin/docker-$name" "$plugins/docker-$name"
    echo "docker-plugins: installed docker $name as $plugins/docker-$name"
  fi
done
