# payments-svc image: a static Go binary on distroless, running as uid/gid 65532.
#   make image     (or: docker build -t payments-svc:dev .)
#
# No `# syntax=` line: that would make BuildKit fetch its frontend from a
# registry; the frontend built into the engine reads everything used here.
# The bases are build arguments so a machine without a registry can pass
# stand-ins (test/images/build.sh, `make image-local`); the defaults are the
# real upstream images.
ARG BUILD_IMAGE=golang:1.26.8-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${BUILD_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0
# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/payments-svc ./cmd/server

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="payments-svc" \
      org.opencontainers.image.description="Idempotent gRPC payments service backed by Redis" \
      org.opencontainers.image.source="https://github.com/payments-svc/payments-svc" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/payments-svc /payments-svc
USER 65532:65532
# gRPC; the public HTTP port (the provider webhook only); the private admin
# port (/metrics, /healthz, /readyz, /debug/pprof/ with PAYMENTS_PPROF=true),
# which must never be published beyond the host or the cluster.
EXPOSE 50051 8080 9090
# No shell in the image: the binary is its own grpc.health.v1 client.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/payments-svc", "healthcheck"]
ENTRYPOINT ["/payments-svc"]
