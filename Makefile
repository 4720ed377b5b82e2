# fedge — build, test, benchmark. Everything here needs only Go (and gcc for
# the race detector, which .ci/run installs on a fresh machine).
GO        ?= go
PKGS      := ./...
# Packages that run goroutines of their own: tested with the race detector.
RACE_PKGS := ./protocol/... ./coordinator/... ./agent/... ./internal/... ./cmd/... ./examples/internal/...
BENCHTIME ?= 1x

.PHONY: all build test test-torch test-ui test-race vet fmt-check tidy-check bench demo chaos fresh-check fuzz clean

all: build test

build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -o bin/fedge ./cmd/fedge

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags chaos ./internal/chaos
	$(GO) vet -tags torch ./agent ./internal/testcluster
	$(GO) vet -tags ui ./internal/testcluster

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# go.mod and go.sum say exactly what the code imports (go mod tidy made no
# change).
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; exit 1; }

# The test command of the README and of CI: formatting, vet, a tidy go.mod,
# the short test suite, then the race detector on the concurrent packages.
# The in-process cluster tests run alone (-p 1): they time Raft elections
# and round deadlines, which two other test binaries on two cores disturb.
test: fmt-check vet tidy-check
	$(GO) test -short -count=1 $$($(GO) list ./... | grep -v /internal/testcluster)
	$(GO) test -short -count=1 -p 1 ./internal/testcluster
	$(GO) test -short -count=1 -timeout 20m -race $(RACE_PKGS)

# The PyTorch example's tests (examples/trainer-torch, build tag torch): its
# trainer through the agent for a round, and a SecAgg+ job of 3 agents over
# QUIC whose test accuracy must rise. They need a python3 that imports torch:
# Debian's python3-torch is installed for /usr/bin/python3 if it cannot (as
# root, or through sudo). About 70 s on 2 cores.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-torch:
	@/usr/bin/python3 -c 'import torch, numpy' 2>/dev/null || { \
	  echo "installing python3-torch (Debian) for /usr/bin/python3"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-torch python3-numpy; }
	$(GO) test -tags torch -count=1 -p 1 -timeout 10m -run 'Torch' ./agent ./internal/testcluster

# The web console's browser test (build tag ui): a headless Chromium,
# driven through chromedp, logs in to the console of a 3-node in-process
# cluster running a job, opens every page, watches the round count rise,
# and rolls back a rollout. Debian's chromium is installed if missing (as
# root, or through sudo). About 25 s on 2 cores. UI_SCREENSHOTS=docs/console
# refreshes the README's screenshots.
UI_SCREENSHOTS ?=
test-ui:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian) for the console's browser test"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }
	FEDGE_UI_SCREENSHOTS=$(if $(UI_SCREENSHOTS),$(abspath $(UI_SCREENSHOTS))) \
	  $(GO) test -tags ui -count=1 -p 1 -timeout 5m -run 'TestConsoleInBrowser' ./internal/testcluster

# Benchmarks (see docs/BENCHMARKS.md for the recorded figures and machines).
# Pass BENCH=regexp and BENCHTIME=5x to narrow or lengthen a run.
BENCH ?= .
bench:
	$(GO) test -run='^$$' -bench='$(BENCH)' -benchtime=$(BENCHTIME) -benchmem $(PKGS)

# The end-to-end demo: 3 coordinators and 20 agents on loopback, federated
# 2nn on non-IID MNIST under secure aggregation, canary rollout, prediction.
# fedge dev finds (and if needed fetches) the MNIST files itself. It writes
# its picture and JSON into OUT; `make demo OUT=docs/demo` refreshes the
# committed run.
OUT ?= demo-out
demo: build
	bin/fedge dev -out $(OUT)

# The fault suite (internal/chaos): kill -9, SIGSTOP and restarts against a
# cluster of real processes; minutes, so not part of `make test`. Then the
# network probes over real node processes (an unauthenticated flood, a
# follower's kill -9, connections racing a node's start), which `make test`
# also runs.
# CHAOS=regexp narrows it; each scenario's recovery time is appended to
# chaos-results.jsonl.
CHAOS ?= .
chaos:
	FEDGE_CHAOS_RESULTS=$(CURDIR)/chaos-results.jsonl $(GO) test -tags chaos -count=1 -p 1 -v -timeout 40m -run '$(CHAOS)' ./internal/chaos
	$(GO) test -count=1 -v -run 'TestEnrollFloodMemory|TestFollowerRejoinsAfterKill9|TestNodeAnswersStartingUntilReady' ./coordinator

# Set-up from nothing: a fresh clone with empty module and build caches runs
# `make test` and `make demo`.
fresh-check:
	scripts/fresh-check

# Fuzz targets, each for FUZZTIME (the seeds run in every `make test`).
FUZZTIME ?= 30s
FUZZ_TARGETS := ./crypto/secagg:FuzzMaskedStream
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $${t#*:} ($${t%%:*}) for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) $${t%%:*} || exit 1; \
	done

clean:
	rm -rf bin
