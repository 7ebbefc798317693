# payments-svc developer workflows. `make help` lists them.
#
# Every tool is pinned here and run through `go run pkg@version`, so a fresh
# machine with Go needs nothing installed by hand.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

BUF           := go run github.com/bufbuild/buf/cmd/buf@v1.75.0
GOLANGCI_LINT := go run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
ACTIONLINT    := go run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
GOVULNCHECK   := go run golang.org/x/vuln/cmd/govulncheck@v1.9.0
HELM          := go run helm.sh/helm/v3/cmd/helm@v3.22.0
KIND          := go run sigs.k8s.io/kind@v0.30.0
# promtool of the newest Prometheus the module proxy serves (v3.x is tagged v0.3xx.y in Go); the first build takes minutes.
# remove_all_sd leaves Prometheus's service discovery plugins (cloud SDKs,
# client-go) out of promtool, which needs none of them to test rules and
# builds several times faster for it.
PROMTOOL      := go run -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@v0.316.0
# kube-linter is not served by the module proxy this machine reaches; CI runs it (see .github/workflows/ci.yml).
KUBE_LINTER   := go run golang.stackrox.io/kube-linter/cmd/kube-linter@v0.8.3
SKAFFOLD      ?= $(CURDIR)/.cache/tools/bin/skaffold

CHART         := charts/payments
KUBE_VERSION  := 1.34.0
KIND_CLUSTER  := payments
NAMESPACE     ?= payments
RELEASE       ?= payments
IMAGE         ?= payments-svc:dev

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
COVERAGE_MIN := 80

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# DEV_WEBHOOK_SECRET is base64 of "dev-only-webhook-secret-change-me": a
# deliberately public secret for local runs. Never use it anywhere else.
DEV_WEBHOOK_SECRET := whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l

.PHONY: run
run: ## run the server on the embedded in-process Redis (data is lost on exit) with a dev webhook secret
	PAYMENTS_WEBHOOK_SECRETS=$${PAYMENTS_WEBHOOK_SECRETS:-$(DEV_WEBHOOK_SECRET)} go run ./cmd/server

.PHONY: build
build: ## build bin/payments-svc
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/payments-svc ./cmd/server

.PHONY: proto
proto: ## regenerate the Go code in proto/ and the OpenAPI v2 file in api/ from the .proto files
	$(BUF) generate

OPENAPI_V2 := api/payments/v1/payments.swagger.json
OPENAPI    := internal/transport/http/openapi.json

.PHONY: openapi
openapi: proto ## regenerate the OpenAPI v2 file in api/ and, from it, the served OpenAPI 3 document internal/transport/http/openapi.json
	go run ./internal/transport/http/openapigen -in $(OPENAPI_V2) -out $(OPENAPI)

.PHONY: fmt
fmt: ## format the Go code
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## gofmt, go vet, golangci-lint, buf lint, stale generated code (proto/, api/, the OpenAPI 3 document), actionlint, chart lint and the promtool alert tests
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	$(GOLANGCI_LINT) run ./...
	$(BUF) lint
	@# Generate proto/ and api/ afresh into a temporary directory, run the
	@# OpenAPI 3 generator on that fresh api/, and diff all three against the
	@# tree. `|| true` keeps pipefail from exiting before the hint is printed.
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(BUF) generate -o "$$tmp"; \
	  if ! diff -r -q -x '*.proto' -x '*.yaml' "$$tmp/proto" proto >/dev/null; then \
	    diff -r -x '*.proto' -x '*.yaml' "$$tmp/proto" proto | head -40 || true; \
	    echo "generated code in proto/ is stale: run 'make proto' and commit"; exit 1; fi; \
	  if ! diff -r -q "$$tmp/api" api >/dev/null; then \
	    diff -r "$$tmp/api" api | head -40 || true; \
	    echo "the OpenAPI v2 file in api/ is stale: run 'make openapi' and commit"; exit 1; fi; \
	  go run ./internal/transport/http/openapigen -in "$$tmp/$(OPENAPI_V2)" -out "$$tmp/openapi.json"; \
	  if ! diff -q "$$tmp/openapi.json" $(OPENAPI) >/dev/null; then \
	    diff -u $(OPENAPI) "$$tmp/openapi.json" | head -40 || true; \
	    echo "$(OPENAPI) is stale: run 'make openapi' and commit"; exit 1; fi
	@if compgen -G '.github/workflows/*.yml' >/dev/null; then $(ACTIONLINT); fi
	$(MAKE) --no-print-directory chart-lint manifests-check test-alerts

.PHONY: test
test: ## the full Go suite: unit, in-process and real-binary tests with -race (fails under $(COVERAGE_MIN)% line coverage), then chart render tests
	go test -race -covermode=atomic -coverprofile=coverage.out ./...
	@grep -v -E '/proto/|/bench/' coverage.out > coverage.filtered.out; \
	  total=$$(go tool cover -func=coverage.filtered.out | awk '/^total:/ {sub("%", "", $$3); print $$3}'); \
	  rm -f coverage.filtered.out; \
	  echo "coverage: $$total% of statements (gate: $(COVERAGE_MIN)%, generated proto code and bench/ excluded)"; \
	  awk -v t="$$total" -v m="$(COVERAGE_MIN)" 'BEGIN { exit (t + 0 >= m) ? 0 : 1 }' || \
	    { echo "coverage $$total% is below the $(COVERAGE_MIN)% gate"; exit 1; }
	$(MAKE) --no-print-directory test-chart

FLAKE_COUNT ?= 20

.PHONY: test-flakes
test-flakes: ## hunt flaky tests: two copies of the unit suite at once with -race -count=$(FLAKE_COUNT) (CPU contention), then the integration suite -count=3; bounded by -timeout
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	  go test -race -count=$(FLAKE_COUNT) -timeout 30m ./... >"$$log" 2>&1 & other=$$!; \
	  status=0; go test -race -count=$(FLAKE_COUNT) -timeout 30m ./... || status=1; \
	  wait $$other || { status=1; grep -E -A8 -- '--- FAIL|panic:' "$$log" | head -60; }; \
	  exit $$status
	go test -race -tags integration -count=3 -timeout 15m ./tests/...

.PHONY: test-integration
test-integration: ## real redis-server (single, AOF, Cluster) and real server replicas: exactly-once, restarts, outage, shutdown
	go test -race -tags integration -count=1 -timeout 3m ./tests/...

JAEGER_BIN ?= $(CURDIR)/.cache/tools/bin/jaeger

.PHONY: test-tracing
test-tracing: ## build Jaeger v2.13.0 from its module (v1.76.0; ~18 min cold here, then skipped) and run TestTracingJaeger: the real server's spans read back from Jaeger
	test/tools/build.sh jaeger
	JAEGER_BIN="$(JAEGER_BIN)" go test -race -tags integration -count=1 -timeout 5m -run '^TestTracingJaeger$$' -v ./tests/integration

# The failover suite (tests/failover, root): real Sentinel, Cluster and
# single-node Redis on their own loopback addresses, two server replicas,
# faults under load, and the history checker. It prints the table that
# ARCHITECTURE.md quotes. FAILOVER_RUNS repeats every fault and setting.
FAILOVER_RUNS ?= 3
FAILOVER_TESTS ?= ^TestFailover$$

.PHONY: test-failover-short
test-failover-short: ## the bounded failover suite .ci/run runs: every run that asserts no loss, once (root; about 3.5 min)
	FAILOVER_SHORT=1 FAILOVER_RUNS=1 go test -tags failover -count=1 -timeout 30m -run '$(FAILOVER_TESTS)' -v ./tests/failover

.PHONY: test-failover
test-failover: ## Redis failovers under load, checked for lost and duplicated payments: Sentinel kill, partitions, SIGSTOP, Cluster kill, AOF restarts (root; FAILOVER_RUNS=$(FAILOVER_RUNS))
	FAILOVER_RUNS=$(FAILOVER_RUNS) go test -tags failover -count=1 -timeout 90m -run '$(FAILOVER_TESTS)' -v ./tests/failover

BENCH_OUT := bin/bench

.PHONY: bench
bench: ## benchmarks, never pass/fail: micro-benchmarks, a CPU profile of the hot path, real Redis + server vs the gRPC and Redis floors
	@mkdir -p $(BENCH_OUT)
	go test -run '^$$' -bench . -benchmem -benchtime 1s ./bench/
	go test -run '^$$' -bench 'BenchmarkRequestPayment/redis-server/new-parallel64' -benchmem -benchtime 4s \
	  -cpuprofile $(BENCH_OUT)/cpu.prof -o $(BENCH_OUT)/bench.test ./bench/
	go tool pprof -top -nodecount 30 $(BENCH_OUT)/bench.test $(BENCH_OUT)/cpu.prof
	go run ./bench/run -profile $(BENCH_OUT) | tee $(BENCH_OUT)/results.md

# BASELINE names a git revision whose server bench-cpu measures beside the
# working tree's in the same run, for before/after figures.
BASELINE ?=
CPU_RATES ?= 500,2000
# SERVER_PROCS sets the servers' GOMAXPROCS: 1 is what the chart's CPU limit
# of one core gives a pod.
SERVER_PROCS ?=

.PHONY: bench-cpu
bench-cpu: ## CPU µs per call of payments-svc, redis-server and the no-op at fixed offered rates (CPU_RATES); BASELINE=<rev> adds that revision's server, SERVER_PROCS=1 runs them as the chart does; profiles in bin/bench
	@mkdir -p $(BENCH_OUT)
	go run ./bench/run -suite cpu -rates $(CPU_RATES) $(if $(BASELINE),-baseline $(BASELINE)) $(if $(SERVER_PROCS),-gomaxprocs $(SERVER_PROCS)) -profile $(BENCH_OUT) | tee $(BENCH_OUT)/cpu.md

# The Prometheus server `make dashboard-png` scrapes the service with: the
# same pinned module as PROMTOOL, service discovery left out; the UI is not used.
PROMETHEUS_BIN := $(CURDIR)/.cache/tools/prometheus/bin/prometheus

.PHONY: dashboard-png
dashboard-png: ## docs/dashboard.png: the Grafana dashboard's panels drawn from a real run (real binary, redis-server, Prometheus, a 10 s Redis outage); needs redis-server and gnuplot
	GOBIN=$(dir $(PROMETHEUS_BIN)) go install -tags remove_all_sd github.com/prometheus/prometheus/cmd/prometheus@v0.316.0
	go run ./bench/dashboard -prometheus $(PROMETHEUS_BIN) -out docs/dashboard.png

FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## fuzz the webhook signature parser and event decoder for FUZZTIME each (default 30s)
	go test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./internal/webhook
	go test -run '^$$' -fuzz '^FuzzDecodeEvent$$' -fuzztime $(FUZZTIME) ./internal/webhook

.PHONY: vuln
vuln: ## scan dependencies for known vulnerabilities
	$(GOVULNCHECK) ./...

.PHONY: test-chart
test-chart: ## render the Helm chart with the Helm Go SDK and check every object (module test/chart)
	cd test/chart && go test -count=1 ./...

.PHONY: test-alerts
test-alerts: ## test/alerts/rules.yaml is the chart's render, then promtool check rules and promtool test rules on it
	cd test/chart && go test -count=1 -run '^TestPromtoolRulesAreTheChartsRules$$' .
	$(PROMTOOL) check rules test/alerts/rules.yaml
	$(PROMTOOL) test rules test/alerts/rules_test.yaml

.PHONY: alerts-rules
alerts-rules: ## re-render test/alerts/rules.yaml from charts/payments/files/prometheus-rules.yaml (commit it)
	cd test/chart && UPDATE_ALERT_RULES=1 go test -count=1 -run '^TestPromtoolRulesAreTheChartsRules$$' .

.PHONY: chart-lint
chart-lint: ## helm lint --strict the chart with its defaults, every ci/ values file and the kind values
	$(HELM) lint --strict $(CHART) --kube-version $(KUBE_VERSION)
	@for f in $(CHART)/ci/*-values.yaml k8s/values-kind.yaml; do \
	  echo "helm lint --strict -f $$f"; \
	  $(HELM) lint --strict $(CHART) --kube-version $(KUBE_VERSION) -f "$$f" >/dev/null || exit 1; \
	done

# The plain manifests in k8s/ are rendered from the chart, never edited by hand.
define render_manifests
	{ echo "# GENERATED by 'make manifests' from $(CHART) with k8s/values-kind.yaml: do not edit."; \
	  $(HELM) template $(RELEASE) $(CHART) --namespace $(NAMESPACE) --kube-version $(KUBE_VERSION) \
	    --skip-tests -f k8s/values-kind.yaml; } > $(1)
endef

.PHONY: manifests
manifests: ## render k8s/payments.yaml from the chart (kubectl apply -n payments -f k8s/payments.yaml)
	$(call render_manifests,k8s/payments.yaml)

.PHONY: manifests-check
manifests-check: ## fail when k8s/payments.yaml is stale against the chart
	@tmp=$$(mktemp); trap 'rm -f "$$tmp"' EXIT; \
	  $(call render_manifests,"$$tmp"); \
	  if ! diff -u k8s/payments.yaml "$$tmp"; then \
	    echo "k8s/payments.yaml is stale: run 'make manifests' and commit"; exit 1; fi

.PHONY: kube-lint
kube-lint: ## kube-linter on the rendered chart (needs golang.stackrox.io on the module proxy)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  for f in $(CHART)/ci/*-values.yaml; do \
	    $(HELM) template $(RELEASE) $(CHART) --kube-version $(KUBE_VERSION) -f "$$f" > "$$tmp/$$(basename "$$f" .yaml).yaml"; \
	  done; \
	  $(KUBE_LINTER) lint "$$tmp"

# Stand-ins for the upstream base images, built from Debian packages and this
# machine's Go toolchain by test/images/build.sh, for machines with no registry.
LOCAL_NS            := payments-local
GO_VERSION          := $(patsubst go%,%,$(shell go env GOVERSION))
LOCAL_BUILD_IMAGE   := $(LOCAL_NS)/golang:$(GO_VERSION)-bookworm
LOCAL_RUNTIME_IMAGE := $(LOCAL_NS)/static:nonroot
LOCAL_REDIS_IMAGE   := $(LOCAL_NS)/redis:bookworm
# Empty means the Dockerfile's defaults, the real upstream images.
BUILD_IMAGE   ?=
RUNTIME_IMAGE ?=
# The image's size budget, from `make size` (see BENCHMARKS.md): a 23.4 MiB
# binary plus a ~2 MiB distroless base, with room for the observability work.
IMAGE_BUDGET_MIB := 30
COMPOSE ?= docker compose

.PHONY: docker-plugins
docker-plugins: ## build docker compose and buildx from their pinned modules and install any the docker CLI lacks
	test/tools/build.sh --install-docker-plugins compose buildx

.PHONY: images-local
images-local: ## build the payments-local/* stand-ins for the base and Redis images from Debian packages (no registry)
	test/images/build.sh

.PHONY: image
image: ## build the container image $(IMAGE) (BUILD_IMAGE and RUNTIME_IMAGE override the upstream bases)
	DOCKER_BUILDKIT=1 docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) \
	  $(if $(BUILD_IMAGE),--build-arg BUILD_IMAGE=$(BUILD_IMAGE)) \
	  $(if $(RUNTIME_IMAGE),--build-arg RUNTIME_IMAGE=$(RUNTIME_IMAGE)) -t $(IMAGE) .

.PHONY: image-local
image-local: images-local ## build $(IMAGE) on the payments-local stand-ins, for machines that reach no registry
	$(MAKE) --no-print-directory image BUILD_IMAGE=$(LOCAL_BUILD_IMAGE) RUNTIME_IMAGE=$(LOCAL_RUNTIME_IMAGE)

.PHONY: image-check
image-check: ## $(IMAGE) is under $(IMAGE_BUDGET_MIB) MiB, runs as 65532:65532 and starts
	@size=$$(docker image inspect --format '{{.Size}}' $(IMAGE)); \
	  echo "$(IMAGE): $$(awk -v s=$$size 'BEGIN {printf "%.2f", s / 1048576}') MiB (budget $(IMAGE_BUDGET_MIB) MiB)"; \
	  test "$$size" -lt $$(( $(IMAGE_BUDGET_MIB) * 1048576 )) || { echo "$(IMAGE) is over its $(IMAGE_BUDGET_MIB) MiB budget"; exit 1; }
	@user=$$(docker image inspect --format '{{.Config.User}}' $(IMAGE)); \
	  test "$$user" = "65532:65532" || { echo "$(IMAGE) runs as '$$user', want 65532:65532"; exit 1; }
	docker run --rm --read-only --cap-drop ALL $(IMAGE) version

.PHONY: size
size: ## what each module adds to the server binary (the image's size budget comes from this)
	go run ./bench/binsize

REDIS_IMAGE ?= redis:8.10.2-alpine

.PHONY: test-container
test-container: ## run $(IMAGE) read-only as 65532 beside $(REDIS_IMAGE): HEALTHCHECK, gRPC, HTTP, docker stop under load; make up, restarts, make down
	IMAGE=$(IMAGE) REDIS_IMAGE=$(REDIS_IMAGE) COMPOSE="$(COMPOSE)" \
	  $(if $(BUILD_IMAGE),BUILD_IMAGE=$(BUILD_IMAGE)) $(if $(RUNTIME_IMAGE),RUNTIME_IMAGE=$(RUNTIME_IMAGE)) \
	  go test -tags integration,container -count=1 -timeout 10m -run '^(TestImage|TestCompose)' -v ./tests/integration

.PHONY: test-container-local
test-container-local: image-local ## test-container on the payments-local stand-ins: what .ci/run proves on a machine with no registry
	$(MAKE) --no-print-directory test-container BUILD_IMAGE=$(LOCAL_BUILD_IMAGE) RUNTIME_IMAGE=$(LOCAL_RUNTIME_IMAGE) \
	  REDIS_IMAGE=$(LOCAL_REDIS_IMAGE)

.PHONY: up
up: ## docker compose: build, start the service and Redis, wait until healthy (needs Docker)
	$(COMPOSE) up --build --wait --wait-timeout 180

.PHONY: up-local
up-local: images-local ## make up on the payments-local stand-ins (Redis from Debian, bases built here): no registry needed
	BUILD_IMAGE=$(LOCAL_BUILD_IMAGE) RUNTIME_IMAGE=$(LOCAL_RUNTIME_IMAGE) PAYMENTS_REDIS_IMAGE=$(LOCAL_REDIS_IMAGE) \
	  $(MAKE) --no-print-directory up

.PHONY: down
down: ## docker compose: stop and remove the containers (the Redis volume is kept)
	$(COMPOSE) down

.PHONY: kind-up
kind-up: ## create the kind cluster from k8s/kind-cluster.yaml (needs Docker)
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind cluster $(KIND_CLUSTER) already exists"; \
	else $(KIND) create cluster --config k8s/kind-cluster.yaml --wait 120s; fi

.PHONY: kind-down
kind-down: ## delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)

.PHONY: kind-load
kind-load: image ## build $(IMAGE) and load it into the kind cluster
	$(KIND) load docker-image $(IMAGE) --name $(KIND_CLUSTER)

.PHONY: deploy
deploy: ## helm upgrade --install the chart on the current kube context with k8s/values-kind.yaml
	$(HELM) upgrade --install $(RELEASE) $(CHART) --namespace $(NAMESPACE) --create-namespace \
	  -f k8s/values-kind.yaml --wait --timeout 5m

.PHONY: skaffold
skaffold: ## build skaffold v2.16.1 (the newest the module proxy serves) into .cache/tools/bin
	test/tools/build.sh skaffold

.PHONY: dev
dev: skaffold ## skaffold dev loop on the kind cluster: rebuild, redeploy and port-forward 50051/8080/9090 on every change
	$(SKAFFOLD) dev --profile kind --port-forward

.PHONY: dev-local
dev-local: skaffold ## skaffold dev loop on the make cluster-up cluster: build on the local bases, load into the node, redeploy, port-forward
	KUBECONFIG="$(CLUSTER_STATE)/kubeconfig" PATH="$(KUBE_BIN):$$PATH" $(SKAFFOLD) dev --profile local-cluster --port-forward --cache-artifacts=false --trigger=polling

# skaffold's custom builder for the local-cluster profile: it sets IMAGE to the
# tag it wants, then deploys an unpushed local build as <repo>:<image id>, so
# the node gets both names. The supervisor is run as built, never rebuilt
# under a live cluster.
.PHONY: skaffold-build-local
skaffold-build-local:
	$(MAKE) --no-print-directory image-local IMAGE="$$IMAGE" VERSION=skaffold
	@id=$$(docker image inspect -f '{{.Id}}' "$$IMAGE"); by_id="$${IMAGE%:*}:$${id#sha256:}"; \
	  docker tag "$$IMAGE" "$$by_id"; \
	  "$(KUBE_CLUSTER)" load -state "$(CLUSTER_STATE)" "$$IMAGE"; \
	  "$(KUBE_CLUSTER)" load -state "$(CLUSTER_STATE)" "$$by_id"

KUBE_BIN ?= $(CURDIR)/.cache/kube/bin

.PHONY: kube-tools
kube-tools: ## build the pinned control plane, kwok and helm into .cache/kube/bin (cold ~10 min, then skipped)
	test/kube/build.sh "$(KUBE_BIN)"

.PHONY: chart-e2e
chart-e2e: kube-tools ## check charts/payments on a real API server, controllers and kwok on 127.0.0.1
	cd test/kube && $(GOLANGCI_LINT) run --allow-serial-runners ./controlplane/ ./e2e/
	cd test/kube && KUBE_BIN="$(KUBE_BIN)" go test -count=1 -timeout 20m ./controlplane/ ./e2e/

# A one-node cluster whose pods really run (test/kube/README.md, "Real node"):
# the control plane above plus containerd, kubelet, kube-proxy and CoreDNS.
# Needs root and a running Docker engine; one cluster per machine at a time.
CLUSTER_STATE  ?= $(CURDIR)/.cache/cluster
CLUSTER_IMAGES ?=
KUBE_CLUSTER   := $(KUBE_BIN)/kube-cluster
TOOLS_BIN      := $(CURDIR)/.cache/tools/bin

.PHONY: cluster-images
cluster-images: kube-tools ## build payments-local/pause and payments-local/coredns into Docker (the node's own images)
	test/kube/images/build.sh "$(KUBE_BIN)"

.PHONY: kube-cluster
kube-cluster: ## build the cluster supervisor into .cache/kube/bin (incremental, seconds)
	@mkdir -p "$(KUBE_BIN)"
	cd test/kube && CGO_ENABLED=0 go build -trimpath -o "$(KUBE_CLUSTER)" ./cluster/kube-cluster

.PHONY: cluster-up
cluster-up: kube-tools cluster-images kube-cluster ## start control plane + real node in the background (CLUSTER_IMAGES="a b" imports more); prints the kubeconfig path
	"$(KUBE_CLUSTER)" up -bin "$(KUBE_BIN)" -state "$(CLUSTER_STATE)" $(foreach i,$(CLUSTER_IMAGES),-image $(i))

.PHONY: cluster-load
cluster-load: kube-cluster ## put the Docker image IMAGE (default $(IMAGE)) into the running node's containerd
	"$(KUBE_CLUSTER)" load -state "$(CLUSTER_STATE)" $(IMAGE)

.PHONY: cluster-down
cluster-down: kube-cluster ## stop the cluster and remove everything it created (also after a crash)
	"$(KUBE_CLUSTER)" down -bin "$(KUBE_BIN)" -state "$(CLUSTER_STATE)"

.PHONY: cluster-node-e2e
cluster-node-e2e: kube-tools cluster-images ## prove the node itself on a cluster of its own: probes, Service + CoreDNS, port-forward, exec, logs, a bound PVC (not while cluster-up runs)
	cd test/kube && $(GOLANGCI_LINT) run --allow-serial-runners ./controlplane/ ./internal/... ./node/ ./cluster/... ./images/...
	cd test/kube && KUBE_CLUSTER_E2E=1 KUBE_BIN="$(KUBE_BIN)" go test -count=1 -timeout 20m -v ./cluster/

.PHONY: cluster-e2e
cluster-e2e: cluster-up ## the chart on real pods of the cluster-up cluster, with IMAGE and the local Redis: install, grpcurl via port-forward, webhook, helm test, rollout, pod loss, Redis loss under load
	$(MAKE) --no-print-directory cluster-load IMAGE=$(IMAGE)
	$(MAKE) --no-print-directory cluster-load IMAGE=$(LOCAL_REDIS_IMAGE)
	test/tools/build.sh grpcurl
	KUBECONFIG="$(CLUSTER_STATE)/kubeconfig" PATH="$(KUBE_BIN):$(TOOLS_BIN):$$PATH" \
	  $(MAKE) --no-print-directory test-kube IMAGE=$(IMAGE) REDIS_IMAGE=$(LOCAL_REDIS_IMAGE) KUBE_TESTS='$(CLUSTER_E2E_TESTS)'

CLUSTER_E2E_TESTS ?= ^TestKube(ChartOnRealPods|DisruptionsUnderLoad|Skaffold|DevLoop)

KUBE_TESTS ?= ^TestKube

.PHONY: test-kube
test-kube: ## the chart tests of tests/integration (KUBE_TESTS) on the cluster of KUBECONFIG; IMAGE and REDIS_IMAGE must be on its node(s)
	IMAGE=$(IMAGE) REDIS_IMAGE=$(REDIS_IMAGE) go test -tags integration,cluster -count=1 -timeout 20m -run '$(KUBE_TESTS)' -v ./tests/integration

.PHONY: clean
clean: ## remove build output and coverage files
	rm -rf bin coverage.out coverage.html
