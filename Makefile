# Targets: test (gofmt check, go vet, all single-process tests, then the
# per-suite tally of the MLS test vectors), e2e (multi-process tests of the
# built binaries, build tag e2e, then interop), interop (members built on
# ts-mls under Node and on mls-go with our server, build tag interop), ci
# (test then e2e: what .ci/run runs), bench, fuzz (every fuzz target for
# FUZZTIME), lint (test's checks plus staticcheck at a pinned version),
# sweep (the decentralisation simulator's grid of docs/DECENTRALISATION.md;
# minutes, not part of test or ci).
GO         ?= go
FUZZTIME   ?= 10s
BENCHCOUNT ?= 3
STATICCHECK = honnef.co/go/tools/cmd/staticcheck@v0.8.2

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

.PHONY: test e2e interop ci vet fmtcheck vectors bench fuzz lint sweep

test: fmtcheck vet
	$(GO) test -count=1 ./...
	@$(MAKE) --no-print-directory vectors

# Multi-process tests: they build cmd/mlsserver and run several processes
# on one PostgreSQL database (MLSMODE_TEST_POSTGRES).
e2e:
	$(GO) test -count=1 -tags e2e ./e2e/... ./cmd/mlsroom/
	@$(MAKE) --no-print-directory interop

# Independent MLS implementations with our running server: npm ci installs
# the exactly pinned ts-mls packages of interop/ts-mls (Node 20 or later).
interop:
	cd interop/ts-mls && npm ci --no-audit --no-fund
	$(GO) test -count=1 -v -tags interop ./interop/...

ci: test e2e

fmtcheck:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/... ./cmd/mlsroom/
	$(GO) vet -tags interop ./interop/...

# How many cases of each official MLS test-vector file ran, per cipher suite.
vectors:
	$(GO) test -count=1 -run '^TestVectors$$' -v ./mls/... | grep -E '\.go:[0-9]+: |^(ok|FAIL|--- FAIL|panic)'

# Single-process benchmarks, then the client's invite benchmark over three
# mlsserver processes (build tag e2e).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./...
	$(GO) test -tags e2e -run '^$$' -bench BenchmarkInviteToFirstMessage -benchtime 3x -count $(BENCHCOUNT) ./e2e/

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s; \
	  done; \
	done

lint: fmtcheck vet
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags e2e ./e2e/... ./cmd/mlsroom/
	$(GO) run $(STATICCHECK) -tags interop ./interop/...

# The decentralisation sweep: writes docs/decentralisation/sweep.{csv,md}
# and the plots (see docs/DECENTRALISATION.md).
sweep:
	$(GO) run ./cmd/mlsroom simulate --sweep docs/decentralisation/sweep.json --out docs/decentralisation
