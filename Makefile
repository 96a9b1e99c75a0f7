# lifeline — build, demo and test. See README.md.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
HELPER_FLAGS := -trimpath -ldflags='-s -w'
HELPERS := internal/helperbin/bin/lifeline-helper-linux-amd64 internal/helperbin/bin/lifeline-helper-linux-arm64
GOFILES := $(shell find . -name '*.go' -not -path './lab/*' 2>/dev/null)

.PHONY: all build man helper deps demo demo-down test test-short vet cross dist model fuzz faults bench bench-all bench-cpu bench-preflight clean

all: build

## build: the helpers (linux/amd64, linux/arm64; static, stripped) embedded into bin/lifeline
build: bin/lifeline

helper: $(HELPERS)

internal/helperbin/bin/lifeline-helper-linux-%: $(GOFILES) go.mod go.sum
	CGO_ENABLED=0 GOOS=linux GOARCH=$* $(GO) build $(HELPER_FLAGS) -o $@ ./cmd/lifeline-helper
	@ls -l $@ | awk '{printf "helper linux/%s: %d bytes\n", "$*", $$5}'

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
VERSION_FLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

bin/lifeline: $(HELPERS) $(GOFILES) go.mod go.sum
	$(GO) build -trimpath -ldflags='$(VERSION_FLAGS)' -o $@ ./cmd/lifeline

## man: man pages (section 1) for every command, from the cobra tree, into docs/man/
man: bin/lifeline
	rm -rf docs/man && SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) bin/lifeline man --dir docs/man

WORKSTATION_PKGS := ./cmd/lifeline ./session ./remote/... ./inventory ./wire ./internal/textsafe ./internal/helperbin ./internal/fanout ./internal/shquote ./internal/runstore
PLATFORMS := linux/amd64 linux/arm64 darwin/arm64 darwin/amd64

## cross: the workstation binary builds, and go vet passes, for every platform in PLATFORMS
cross: $(HELPERS)
	@set -e; for p in $(PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -o /dev/null ./cmd/lifeline; \
		GOOS=$$os GOARCH=$$arch $(GO) vet $(WORKSTATION_PKGS); \
		echo "cross $$p: build + vet ok"; done

## dist: dist/lifeline-OS-ARCH for every platform (helpers embedded) and dist/SHA256SUMS
dist: $(HELPERS)
	@rm -rf dist && mkdir -p dist
	@set -e; for p in $(PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags='-s -w' -o dist/lifeline-$$os-$$arch ./cmd/lifeline; done
	cd dist && sha256sum lifeline-* > SHA256SUMS && cat SHA256SUMS

## model: check the transaction's model (model/lifeline.pml) with spin; see docs/reliability.md
model:
	scripts/model.sh

## faults: the whole crash-point matrix (faults x phases x backends) in the lab (root); writes
## docs/reliability-matrix.md. `go test ./internal/e2e/` runs its CI subset (FAULTS=ci)
faults:
	FAULTS=all LIFELINE_RELIABILITY_TABLE=docs/reliability-matrix.md $(GO) test -count=1 -timeout 30m -run '^TestFaultMatrix$$' -v ./internal/e2e/ 2>&1 | tee /tmp/lifeline-faults.log | grep -E '^\s*--- |faults_test.go|^(ok|FAIL)'; exit $${PIPESTATUS[0]}

## fuzz: every fuzz target for FUZZTIME each (default 5s; FUZZTIME=5m for a long run)
fuzz:
	scripts/fuzz.sh

## deps: Debian packages the lab and the tests need (root)
deps:
	@scripts/deps.sh

## demo: a 3-host lab, a guarded apply that confirms, one that locks out and reverts
demo: deps build
	@scripts/demo.sh

demo-down:
	bin/lifeline lab down --dir lab

## test: vet, gofmt, and every test (unit + end-to-end lab tests, as root)
test: deps build vet cross model fuzz
	bin/lifeline lab rootfs
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: build
	$(GO) test -count=1 -short ./...

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

## bench: lifeline vs Ansible on 1..100 lab hosts (see docs/benchmarks.md)
bench: deps build
	bench/run.sh

## bench-preflight: what the preflight adds to a begin on idle lab hosts (bench/preflight.sh)
bench-preflight: build
	bench/preflight.sh

## bench-all: one run of both: bench-cpu (CPU against the SSH floor, 1/12/50-host wall times, 100 to 20,000 rules), then bench at 1 and 50 hosts (against Ansible's iptables_state)
bench-all: deps build
	bench/cpu.sh
	BENCH_SIZES="$${BENCH_SIZES:-1 50}" bench/run.sh

## bench-cpu: CPU per host of a warm guarded apply against `run -- true` (the SSH floor), pids, 1/12/50-host wall times; see docs/benchmarks.md
bench-cpu: deps build
	bench/cpu.sh

clean:
	rm -rf bin dist $(HELPERS)
