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

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
COVERAGE_MIN := 80

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## run the server on the embedded in-process Redis (data is lost on exit)
	go run ./cmd/server

.PHONY: build
build: ## build bin/payments-svc
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/payments-svc ./cmd/server

.PHONY: proto
proto: ## regenerate the Go code in proto/ from the .proto files
	$(BUF) generate

.PHONY: fmt
fmt: ## format the Go code
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## gofmt, go vet, golangci-lint, buf lint, stale generated code, actionlint
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	$(GOLANGCI_LINT) run ./...
	$(BUF) lint
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(BUF) generate -o "$$tmp"; \
	  if ! diff -r -q -x '*.proto' "$$tmp/proto" proto >/dev/null; then \
	    diff -r -x '*.proto' "$$tmp/proto" proto | head -40; \
	    echo "generated code in proto/ is stale: run 'make proto' and commit"; exit 1; fi
	@if compgen -G '.github/workflows/*.yml' >/dev/null; then $(ACTIONLINT); fi

.PHONY: test
test: ## unit and in-process tests with -race; fails under $(COVERAGE_MIN)% line coverage
	go test -race -covermode=atomic -coverprofile=coverage.out ./...
	@grep -v -E '/proto/' coverage.out > coverage.filtered.out; \
	  total=$$(go tool cover -func=coverage.filtered.out | awk '/^total:/ {sub("%", "", $$3); print $$3}'); \
	  rm -f coverage.filtered.out; \
	  echo "coverage: $$total% of statements (gate: $(COVERAGE_MIN)%, generated proto code excluded)"; \
	  awk -v t="$$total" -v m="$(COVERAGE_MIN)" 'BEGIN { exit (t + 0 >= m) ? 0 : 1 }' || \
	    { echo "coverage $$total% is below the $(COVERAGE_MIN)% gate"; exit 1; }

.PHONY: vuln
vuln: ## scan dependencies for known vulnerabilities
	$(GOVULNCHECK) ./...

KUBE_BIN := $(CURDIR)/.cache/kube/bin

.PHONY: kube-tools
kube-tools: ## build the pinned control plane, kwok and helm into .cache/kube/bin (cold ~10 min, then skipped)
	test/kube/build.sh "$(KUBE_BIN)"

.PHONY: chart-e2e
chart-e2e: kube-tools ## check charts/payments on a real API server, controllers and kwok on 127.0.0.1
	cd test/kube && go vet ./controlplane/ ./e2e/
	cd test/kube && KUBE_BIN="$(KUBE_BIN)" go test -count=1 -timeout 20m ./e2e/

.PHONY: clean
clean: ## remove build output and coverage files
	rm -rf bin coverage.out coverage.html
