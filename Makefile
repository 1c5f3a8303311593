# certmesh — the two commands a newcomer needs are `make demo` and `make test`.
GO      ?= go
BIN     ?= bin
PKGS    := ./...

.PHONY: all build demo test test-short vet fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/certmesh ./cmd/certmesh-server

# A working mesh on this machine: server + three userspace agents, no root.
demo: build
	BIN=$(BIN) ./scripts/demo.sh

# The whole suite. Network-namespace tests run as root and skip otherwise.
test: build vet
	$(GO) test -count=1 -timeout 20m $(PKGS)

vet:
	$(GO) vet $(PKGS)

# Long fuzzing, separate from the suite (FUZZTIME per target).
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./certs -run XXX -fuzz FuzzParseBundle -fuzztime $(FUZZTIME)
	$(GO) test ./certs -run XXX -fuzz FuzzVerify -fuzztime $(FUZZTIME)
	$(GO) test ./internal/wire -run XXX -fuzz FuzzDecodeEvent -fuzztime $(FUZZTIME)

# Benchmarks: figures go to BENCHMARKS.md (needs root for namespaces).
bench: build
	$(GO) run ./internal/bench/netbench -out BENCHMARKS.md

clean:
	rm -rf $(BIN) demo-state
