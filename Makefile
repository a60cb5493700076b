# KVDB build, run and test entry points. Everything here needs only Go;
# tools used by `generate` and `lint` are installed into .tools/bin.

GO            ?= go
BIN           := $(CURDIR)/bin
TOOLS         := $(CURDIR)/.tools/bin
BUF_VERSION   := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPCURL_VERSION            := v1.9.3

# PYTHON is the interpreter the Python client is generated for and tested
# with: Debian's /usr/bin/python3, because python3-grpcio and python3-protobuf
# install into it. A python3 found first on PATH (pyenv, a virtualenv) usually
# lacks grpc; override with PYTHON=... only for one that has it.
PYTHON        ?= /usr/bin/python3
# The Debian packages generate-clients and test-clients need.
CLIENT_DEBS   := protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf python3-redis
SUDO          := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Loopback only: `make run` is for this machine (SECURITY.md).
ADDRESS  ?= 127.0.0.1:8080
DATA_DIR ?= ./data
NODE_ID  ?= node1

TEST_TIMEOUT ?= 12m
FUZZTIME     ?= 10s
# FUZZMINIMIZETIME bounds the minimizing of each input the fuzzer keeps (new
# coverage or a crash). Go's default, 60s per input, swallows a 5 s slice:
# the fuzzer minimizes its first finds until the slice ends, reports a few
# dozen execs and keeps none of them. 200 runs per input leave the slice to
# fuzzing; pass FUZZMINIMIZETIME=60s for a fully minimized crasher.
FUZZMINIMIZETIME ?= 200x

.PHONY: all build run run-server run-client test test-short test-coverage benchmark \
        generate check-generate lint tools fuzz clean test-linearizability \
        load-test stress-test bench-compare test-durability bench-targets \
        docker-build docker-up docker-down test-docker test-prometheus test-redis \
        client-deps generate-clients check-generate-clients test-clients breaking dev-certs

all: build

# Build information stamped into both binaries (kvdb-server -version,
# kvdbctl --version): git describe, the commit and the UTC build time.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS    := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/kvdb-server ./cmd/kvdb-server
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/kvdbctl ./cmd/kvdbctl

## run: a single node with its data in ./data (Ctrl-C stops it cleanly).
run: run-server

run-server: build
	$(BIN)/kvdb-server -node-id=$(NODE_ID) -address=$(ADDRESS) -data-dir=$(DATA_DIR)

## run-client: the interactive kvdbctl REPL against ADDRESS (127.0.0.1:8080
## unless given; make run-client ADDRESS=10.0.0.5:8080 for another node).
run-client: build
	$(BIN)/kvdbctl -address $(ADDRESS)

## test: every test with the race detector and the invariants build tag
## (engine consistency checked after restores, evictions and a sample of
## applies), plus a short slice of each fuzz target.
test:
	$(GO) vet ./...
	$(GO) vet -tags invariants ./internal/fsm/
	$(GO) test -race -tags invariants -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) fuzz FUZZTIME=5s

test-short:
	$(GO) test -short -count=1 ./...

test-coverage:
	$(GO) test -count=1 -coverprofile=coverage.out ./...
	$(GO) tool cover -func=coverage.out | tail -1
	$(GO) tool cover -html=coverage.out -o coverage.html

## test-linearizability: many seeded fault-injection runs checked with
## porcupine (make test-linearizability SEEDS=50 FIRST_SEED=1). A failing
## seed is printed with the command that replays it.
SEEDS      ?= 20
FIRST_SEED ?= 1
test-linearizability:
	KVDB_LIN_SEEDS=$(SEEDS) KVDB_LIN_FIRST_SEED=$(FIRST_SEED) $(GO) test -count=1 -timeout 60m \
	  -run 'TestLinearizability' -v ./internal/service/ | grep -E '^(=== RUN|--- |\s+lin_test|PASS|FAIL|ok)'

## test-durability: crash a node at every third WAL write up to
## CRASH_POINTS (after the write before its fsync, torn, failing fsync; on
## the machine or the process) and check no acknowledged write is lost and
## no batch half applied after the restart.
CRASH_POINTS ?= 300
test-durability:
	KVDB_CRASH_POINTS=$(CRASH_POINTS) $(GO) test -race -tags invariants -count=1 -timeout 30m \
	  -run 'CrashPoints' ./internal/service/

## fuzz: run every fuzz target for FUZZTIME each (make fuzz FUZZTIME=5m for a long run).
## Go 1.26's fuzz coordinator can fail a run with a bare "context deadline
## exceeded" when -fuzztime ends while a worker is busy (go.dev/issue/75804,
## fixed in Go 1.27); such a run, with no failing input written, is run once
## more. Any other failure fails at once.
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    for try in 1 2; do \
	      echo "fuzz $$pkg $$t"; \
	      if $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) $$pkg >$$log 2>&1; then \
	        cat $$log; break; \
	      fi; \
	      cat $$log; \
	      if [ $$try = 1 ] && grep -q 'context deadline exceeded' $$log && ! grep -q 'Failing input written' $$log; then \
	        echo "fuzz $$t: stopped by the fuzz coordinator's own deadline with no failing input (go.dev/issue/75804): once more"; \
	        continue; \
	      fi; \
	      exit 1; \
	    done; \
	  done; \
	done

## test-prometheus: a real Prometheus (Debian's package, installed here when
## missing) scrapes a three-process cluster on loopback and must see exactly
## one leader. Our own prometheus process runs on a free port; the package's
## service is not started (RUNLEVEL=1 keeps invoke-rc.d from starting it).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "installing Debian's prometheus package"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	CI=$${CI:-1} $(GO) test -count=1 -timeout 5m -run '^TestPrometheusScrapesCluster$$' -v ./test/e2e/

## test-redis: real redis-cli scripts, redis-benchmark against a node and a
## 3-node cluster, and kill -9 of a RESP write (Debian's redis-tools,
## installed here when missing, like test-prometheus). `make test` runs the
## same tests, which skip without redis-tools outside CI.
test-redis:
	@command -v redis-cli >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1 || { \
	  echo "installing Debian's redis-tools package"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-tools; }
	CI=$${CI:-1} $(GO) test -count=1 -timeout 5m -run '^TestRedis' -v ./test/e2e/

## Benchmarks and load tests (docs/benchmarks.md, README "Benchmarking").
## Each starts real kvdb-server processes on loopback through
## test/benchharness and kills them when done; every run is time-bounded.
BENCH_COUNT     ?= 5
BENCH_TIME      ?= 1s
BENCH_DURATION  ?= 5s
BENCH_RUNS      ?= 3
LOAD_DURATION   ?= 60s
STRESS_DURATION ?= 10s
COMPARE_CONNS   ?= 1,4,16,64
COMPARE_FLAGS   ?=
HARNESS         := $(GO) run ./test/benchharness -bin $(BIN)

## benchmark: engine, wire and fsm-apply micro-benchmarks (benchstat input:
## make benchmark > new.txt; benchstat old.txt new.txt), then the README's
## single-node and 3-node performance tables measured on this machine.
benchmark: build
	$(GO) test -run='^$$' -bench=. -benchmem -count=$(BENCH_COUNT) -benchtime=$(BENCH_TIME) ./internal/engine/ ./internal/wire/
	$(GO) test -run='^$$' -bench='^BenchmarkFSMApply$$' -benchmem -count=$(BENCH_COUNT) -benchtime=$(BENCH_TIME) ./internal/fsm/
	$(HARNESS) -duration $(BENCH_DURATION) -runs $(BENCH_RUNS) tables

## load-test: mixed load on a 3-process cluster for LOAD_DURATION with a
## leader transfer half way; fails on any error but retried UNAVAILABLE.
load-test: build
	$(HARNESS) -duration $(LOAD_DURATION) load

## stress-test: 2,000 connections over the node's in-flight cap: the node
## stays up, memory stays bounded, the excess gets RESOURCE_EXHAUSTED, and
## throughput is back within 10 s.
stress-test: build
	$(HARNESS) -duration $(STRESS_DURATION) stress

## bench-compare: KVDB, Redis and etcd under the same load (installs
## redis-server, redis-tools and etcd-server with apt-get when missing);
## writes docs/benchmarks.md and its SVG chart.
bench-compare: build
	$(HARNESS) -duration $(BENCH_DURATION) -runs $(BENCH_RUNS) -conns $(COMPARE_CONNS) $(COMPARE_FLAGS) compare

## bench-targets: the README's target rows (gRPC PUT with and without
## fsync against etcd and a constant gRPC server, binary PUT against Redis
## appendfsync always, 3-node rows, failover), each against its reference
## in the same run; OLD_BIN=dir also measures another build, interleaved.
OLD_BIN ?=
bench-targets: build
	$(HARNESS) -duration $(BENCH_DURATION) -runs $(BENCH_RUNS) $(if $(OLD_BIN),-old-bin $(OLD_BIN)) targets

tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

## generate: regenerate gen/ from api/proto with pinned buf and plugins.
generate: tools
	rm -rf gen/kvdb
	$(TOOLS)/buf generate

## check-generate: fail when the committed gen/ differs from what the protos generate.
check-generate: generate
	@git diff --exit-code -- gen/ || (echo "gen/ is stale: run 'make generate' and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- gen/)" || (git status --porcelain -- gen/; echo "gen/ has untracked files: run 'make generate' and commit" >&2; exit 1)

## client-deps: protoc, the gRPC Python plugin and Python's grpc and protobuf
## from Debian, installed with apt-get only when one of them is missing.
client-deps:
	@if command -v protoc >/dev/null && command -v grpc_python_plugin >/dev/null && \
	    $(PYTHON) -c 'import grpc, google.protobuf, redis' 2>/dev/null; then :; else \
	  echo "installing $(CLIENT_DEBS)"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(CLIENT_DEBS); \
	fi

## generate-clients: regenerate the Python client in gen/python from the
## public API (kvdb/v1 only: kvdb/raft/v1 is internal to the cluster).
generate-clients: client-deps
	rm -rf gen/python/kvdb
	mkdir -p gen/python
	protoc -I api/proto --python_out=gen/python --pyi_out=gen/python \
	  --grpc_python_out=gen/python --plugin=protoc-gen-grpc_python=$$(command -v grpc_python_plugin) \
	  api/proto/kvdb/v1/*.proto

## check-generate-clients: fail when the committed gen/python is stale.
check-generate-clients: generate-clients
	@git diff --exit-code -- gen/python || (echo "gen/python is stale: run 'make generate-clients' and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- gen/python)" || (git status --porcelain -- gen/python; echo "gen/python has untracked files: run 'make generate-clients' and commit" >&2; exit 1)

$(TOOLS)/grpcurl:
	GOBIN=$(TOOLS) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

## test-clients: a real node on loopback driven by the Python example, the
## Python client test script and grpcurl through server reflection.
test-clients: client-deps $(TOOLS)/grpcurl
	PYTHON=$(PYTHON) GRPCURL=$(TOOLS)/grpcurl \
	  $(GO) test -tags clients -count=1 -timeout 5m -v ./test/clients/

## breaking: buf breaking of api/proto against BREAKING_AGAINST (a git ref).
## Unset, it is the merge base with origin/main when HEAD is not on it (a
## branch), else HEAD~1 (the previous commit). A ref that does not exist (a
## shallow or one-commit clone) or holds no api/proto is skipped.
BREAKING_AGAINST ?=
breaking: tools
	@set -e; against="$(BREAKING_AGAINST)"; \
	if [ -z "$$against" ]; then \
	  base=$$(git merge-base HEAD origin/main 2>/dev/null || true); \
	  if [ -n "$$base" ] && [ "$$base" != "$$(git rev-parse HEAD)" ]; then against=$$base; else against=HEAD~1; fi; \
	fi; \
	if ! sha=$$(git rev-parse --verify -q "$$against^{commit}"); then \
	  echo "breaking: no commit $$against to compare with (shallow or first commit): skipped"; exit 0; fi; \
	if ! git cat-file -e "$$sha:api/proto" 2>/dev/null; then \
	  echo "breaking: $$against has no api/proto: skipped"; exit 0; fi; \
	echo "breaking: api/proto against $$against ($$sha)"; \
	$(TOOLS)/buf breaking --against ".git#ref=$$sha"

lint: tools
	$(TOOLS)/buf lint
	$(GO) vet ./...
	$(GO) vet -tags clients ./test/clients/
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1)

## dev-certs: development certificates in CERTS_DIR (Go's crypto/x509, no
## openssl needed): a client CA with a server certificate per node and a
## kvdbctl client certificate, and a peer CA with a peer certificate per
## node. Made on each machine, never committed; kept when already there.
CERTS_DIR ?= certs
dev-certs:
	@test -f $(CERTS_DIR)/peer-ca.pem || $(GO) run ./test/devcerts -dir $(CERTS_DIR) -nodes node1,node2,node3

## docker-build: static binaries into build/docker, then the kvdb:latest
## image FROM scratch (nothing is pulled).
docker-build:
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o build/docker/kvdb-server ./cmd/kvdb-server
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o build/docker/kvdbctl ./cmd/kvdbctl
	docker build -q -t kvdb:latest .

## docker-up: the three-node cluster of docker-compose.yml (kvdb-node1..3).
docker-up: docker-build dev-certs
	docker-compose up -d
	@echo "cluster starting: docker exec -it kvdb-node1 kvdbctl --address localhost:8080 --cacert /certs/ca.pem --cert /certs/client.pem --key /certs/client-key.pem"

docker-down:
	docker-compose down -v

## test-docker: partitions and kills on the compose cluster (needs Docker).
test-docker: docker-build dev-certs
	$(GO) test -count=1 -timeout 15m -tags docker -v ./test/docker/

clean:
	rm -rf $(BIN) build coverage.out coverage.html
