#!/usr/bin/env bash
# Builds local stand-ins for the images this project pulls from registries, so
# the Dockerfile, compose and the cluster can be proven on a machine that
# reaches Debian's archive and a Go toolchain but no container registry.
#
#   test/images/build.sh
#
# Every image is named under payments-local/, never under an upstream name: a
# check that passes on an impostor proves nothing about the real image.
#
#   payments-local/debian:bookworm     mmdebstrap minbase + ca-certificates
#   payments-local/golang:<go>-bookworm  that, plus this machine's Go toolchain
#   payments-local/static:nonroot      scratch + nonroot 65532, CA bundle, /tmp
#   payments-local/redis:bookworm      Debian's redis-server and redis-tools, uid 999 gid 1000
#
# An image whose stamp label matches what it would be built from is kept, so
# a second run costs a few docker inspects.
set -euo pipefail
export DOCKER_BUILDKIT=1

here="$(cd "$(dirname "$0")" && pwd)"
ns="${LOCAL_IMAGE_NS:-payments-local}"
goroot="$(go env GOROOT)"
gover="$(go env GOVERSION)"
gover="${gover#go}"
# The machine's trust store: builds that download modules need it wherever
# HTTPS is inspected, and it is the bundle a Debian host would ship anyway.
ca_bundle=/etc/ssl/certs/ca-certificates.crt

# Each image's stamp hashes its own recipe and its base's stamp, so editing
# one recipe rebuilds that image and what is built on it, nothing else.
stamp_of() { # stamp_of RECIPE...: a short hash of the recipe's words and files
  local part
  for part in "$@"; do
    if [[ -f "$part" ]]; then sha256sum <"$part"; else echo "$part"; fi
  done | sha256sum | cut -c1-16
}
label() { docker image inspect -f '{{ index .Config.Labels "org.payments-svc.stamp" }}' "$1" 2>/dev/null || true; }
current() { # current IMAGE STAMP: IMAGE exists and carries STAMP
  [[ "$(label "$1")" == "$2" ]]
}
# retire IMAGE: remove the image IMAGE names now, once a rebuild has taken the
# name, so rebuilds leave no dangling layers behind.
old_ids=()
remember() { old_ids+=("$(docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true)"); }
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$ca_bundle" "$ctx/ca-certificates.crt"

debian="$ns/debian:bookworm"
s="$(stamp_of "mmdebstrap --variant=minbase --include=ca-certificates bookworm" 1)"
if current "$debian" "$s"; then
  echo "images: $debian is current"
else
  remember "$debian"
  echo "images: building $debian with mmdebstrap (about 2 minutes)"
  command -v mmdebstrap >/dev/null || { echo "images: needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }
  mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$ctx/rootfs.tar"
  docker import --change "LABEL org.payments-svc.stamp=$s" --change 'CMD ["bash"]' "$ctx/rootfs.tar" "$debian"
  rm -f "$ctx/rootfs.tar"
fi

golang="$ns/golang:$gover-bookworm"
s="$(stamp_of "$here/golang.Dockerfile" "$(label "$debian")" "$gover" "$ca_bundle")"
if current "$golang" "$s"; then
  echo "images: $golang is current"
else
  remember "$golang"
  echo "images: building $golang from $goroot"
  tar -C "$(dirname "$goroot")" -cf "$ctx/go.tar" "$(basename "$goroot")"
  docker build -q -f "$here/golang.Dockerfile" --build-arg BASE="$debian" --label "org.payments-svc.stamp=$s" -t "$golang" "$ctx"
  rm -f "$ctx/go.tar"
fi

static="$ns/static:nonroot"
s="$(stamp_of static-nonroot-65532 1 "$ca_bundle")"
if current "$static" "$s"; then
  echo "images: $static is current"
else
  remember "$static"
  echo "images: building $static"
  # A tar, not a Dockerfile, so modes and owners are exact with any builder.
  root="$ctx/static"
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$root/etc/group"
  cp "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/ssl/certs/ca-certificates.crt"
  chmod 1777 "$root/tmp"
  tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$ctx/static.tar" etc tmp
  tar -C "$root" --numeric-owner --owner=65532 --group=65532 -rf "$ctx/static.tar" home
  docker import --change "LABEL org.payments-svc.stamp=$s" --change 'USER 65532:65532' \
    --change 'WORKDIR /home/nonroot' "$ctx/static.tar" "$static"
fi

redis="$ns/redis:bookworm"
s="$(stamp_of "$here/redis.Dockerfile" "$(label "$debian")")"
if current "$redis" "$s"; then
  echo "images: $redis is current"
else
  remember "$redis"
  echo "images: building $redis from Debian's redis-server"
  # Host networking reaches the same Debian archive apt-get uses on this host.
  docker build -q --network host -f "$here/redis.Dockerfile" --build-arg BASE="$debian" \
    --label "org.payments-svc.stamp=$s" -t "$redis" "$ctx"
fi

for id in "${old_ids[@]}"; do
  [[ -n "$id" ]] && docker rmi "$id" >/dev/null 2>&1 || true
done
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep "^$ns/" | sort
