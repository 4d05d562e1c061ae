# Targets: test (gofmt check, go vet, all tests, then the per-suite tally of
# the MLS test vectors), bench, fuzz (every fuzz target for FUZZTIME), lint
# (test's checks plus staticcheck at a pinned version).
GO         ?= go
FUZZTIME   ?= 10s
BENCHCOUNT ?= 3
STATICCHECK = honnef.co/go/tools/cmd/staticcheck@v0.8.2

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

.PHONY: test vet fmtcheck vectors bench fuzz lint

test: fmtcheck vet
	$(GO) test -count=1 ./...
	@$(MAKE) --no-print-directory vectors

fmtcheck:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# How many cases of each official MLS test-vector file ran, per cipher suite.
vectors:
	$(GO) test -count=1 -run '^TestVectors$$' -v ./mls/... | grep -E '\.go:[0-9]+: |^(ok|FAIL|--- FAIL|panic)'

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./...

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s; \
	  done; \
	done

lint: fmtcheck vet
	$(GO) run $(STATICCHECK) ./...
