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

# The whole suite, then every fuzz target for a few seconds.
# Network-namespace tests run as root and skip otherwise.
test: build vet
	$(GO) test -count=1 -timeout 25m $(PKGS)
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME_SHORT)

vet:
	$(GO) vet $(PKGS)

# Longer fuzzing, separate from the suite (FUZZTIME per target).
FUZZTIME ?= 60s
FUZZTIME_SHORT ?= 4s
FUZZ_TARGETS := \
	./certs:FuzzParseBundle ./certs:FuzzVerify ./certs:FuzzVerifyCRL \
	./internal/wire:FuzzDecodeEvent \
	./policy:FuzzParse ./policy:FuzzParseSignedPolicy \
	./agent/filter:FuzzDecode ./agent/filter:FuzzWrite \
	./ca/attest:FuzzVerifyKeyCertification
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); \
	done

# Benchmarks: figures go to BENCHMARKS.md (needs root for namespaces).
bench: build
	$(GO) run ./internal/bench/netbench -out BENCHMARKS.md

clean:
	rm -rf $(BIN) demo-state
