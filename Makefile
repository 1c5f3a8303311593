# certmesh — the two commands a newcomer needs are `make demo` and `make test`.
GO      ?= go
BIN     ?= bin
PKGS    := ./...

.PHONY: all build demo test test-suite test-tpm-fuzz test-tpm vet fuzz bench package test-package clean

all: build

# What `certmesh version` and `certmesh-server version` say, stamped into
# internal/version at link time. SOURCE_DATE_EPOCH (reproducible builds)
# fixes the build date.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT     ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILD_DATE ?= $(shell date -u $(if $(SOURCE_DATE_EPOCH),-d @$(SOURCE_DATE_EPOCH)) +%Y-%m-%dT%H:%M:%SZ)
VERSION_PKG := github.com/certmesh/certmesh/internal/version
LDFLAGS    := -X $(VERSION_PKG).version=$(VERSION) -X $(VERSION_PKG).commit=$(COMMIT) -X $(VERSION_PKG).buildDate=$(BUILD_DATE)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/certmesh ./cmd/certmesh-server

# Release packages: dist/certmesh_VERSION_ARCH.deb, dist/certmesh-VERSION.ARCH.rpm
# and dist/SHA256SUMS, both binaries static (CGO_ENABLED=0) with the units of
# examples/systemd. packaging/ is a module of its own (nfpm's dependencies
# stay out of go.mod); COMMITS orders untagged builds.
DIST    ?= dist
COMMITS  = $(shell git rev-list --count HEAD 2>/dev/null || echo 0)
package:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/bin/ ./cmd/certmesh ./cmd/certmesh-server
	cd packaging && $(GO) run . -bin $(abspath $(DIST))/bin -out $(abspath $(DIST)) -root $(CURDIR) -version '$(VERSION)' -commits $(COMMITS)

# The packaging tests (make package, then dpkg-deb and an rpm reader on what
# it built); not in make test: the first run compiles nfpm and static
# binaries, minutes on a fresh machine. .ci/run runs it after make test.
test-package:
	cd packaging && $(GO) test -count=1 -timeout 15m ./...

# A working mesh on this machine: server + three userspace agents, no root.
demo: build
	BIN=$(BIN) ./scripts/demo.sh

# The whole suite; beside it, the TPM tests and then every fuzz target for a
# few thousand executions (each job's output is printed when it ends).
# Network-namespace tests run as root and skip otherwise. Every package's
# line reports its statement coverage; scripts/cover.sh fails the run when a
# package in COVER_FLOORS (PKG=MIN percent, comma-separated) is below its floor.
COVER_FLOORS := ./agent=70
# Most of the suite's time is tests waiting (WireGuard handshakes and
# retries, namespaces, real timers), not computing: run more packages and
# more parallel tests at once than go test's defaults (both GOMAXPROCS).
TEST_CONCURRENCY ?= -p 4 -parallel 8
test: build vet
	$(MAKE) --no-print-directory -j2 -Otarget test-suite test-tpm-fuzz

test-suite:
	GO=$(GO) ./scripts/cover.sh $(COVER_FLOORS) $(TEST_CONCURRENCY) -count=1 -timeout 25m $(PKGS)

test-tpm-fuzz:
	$(MAKE) --no-print-directory test-tpm
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_SHORT)

# The TPM tests against the Microsoft reference TPM simulator (cgo,
# libssl-dev): the tests of these packages' files built only with the tag
# (scripts/tpmtest.sh); their other tests do not depend on the tag and
# run in the main pass. Everything else builds and tests without the tag.
TPM_PKGS := ./agent/tpmkey ./ca/attest ./ca ./tstest/tpmtest ./tstest/testmesh
test-tpm:
	$(GO) vet -tags tpmsimulator $(TPM_PKGS)
	GO=$(GO) ./scripts/tpmtest.sh -count=1 -timeout 10m $(TPM_PKGS)

vet:
	$(GO) vet $(PKGS)

# Longer fuzzing, separate from the suite (FUZZTIME per target).
FUZZTIME ?= 60s
# make test uses an execution count per target: no wall-clock deadline to race.
FUZZTIME_SHORT ?= 3000x
FUZZ_TARGETS := \
	./certs:FuzzParseBundle ./certs:FuzzVerify ./certs:FuzzVerifyCRL \
	./certs:FuzzParseRoutes \
	./certs:FuzzParseServices \
	./endpoint:FuzzVerify \
	./internal/wire:FuzzDecodeEvent \
	./policy:FuzzParse ./policy:FuzzParseSignedPolicy \
	./agent/filter:FuzzDecode ./agent/filter:FuzzWrite \
	./agent/dns:FuzzAnswer ./agent/dns:FuzzExplainLookup \
	./ca/attest:FuzzVerifyKeyCertification ./ca:FuzzCheckCSRAndProof ./ca:FuzzNoneMatch ./ca:FuzzSpendNonce ./ca:FuzzServerCertificateRequest \
	./server:FuzzServerCertAnswer ./server/console:FuzzLoginCookie \
	./agent/relayc:FuzzDispatch \
	./translog:FuzzParseLeaf ./translog:FuzzParseCheckpointText ./translog:FuzzVerifyCertificate
fuzz:
	GO=$(GO) ./scripts/fuzz.sh $(FUZZTIME) $(FUZZ_TARGETS)

# Benchmarks: figures go to BENCHMARKS.md (needs root for namespaces).
bench: build
	$(GO) run ./tstest/bench/netbench -out BENCHMARKS.md

clean:
	rm -rf $(BIN) $(DIST) demo-state
