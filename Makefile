# matomod — see README.md. `make demo` and `make test` do all the set-up
# on a fresh Debian machine (they call scripts/ensure-db.sh).
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
# A tag v1.2.3 gives 1.2.3; an untagged commit gives 0.0.0+git<hash>.
DEB_VERSION ?= $(shell echo "$(VERSION)" | sed -E '/^v?[0-9]+\./!s/^/0.0.0+git/; s/^v//; s/-/+/g')
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BRANCH ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y%m%d-%H:%M:%S)
VPKG := github.com/prometheus/common/version
LDFLAGS := -s -w -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(REVISION) -X $(VPKG).Branch=$(BRANCH) -X $(VPKG).BuildDate=$(BUILD_DATE)

.PHONY: build test lint demo bench bench-large deb deb-test ensure-db real-matomo clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/matomod ./cmd/matomod

# The test command of README and .ci/run. The real-Matomo template
# (PHP + the release in ../shared/matomo or $$MATOMOD_MATOMO_TARBALL) is built
# once first; the test packages share it.
test: ensure-db real-matomo lint
	$(GO) test -race -count=1 -timeout 25m ./...

# Installs PHP when missing and builds the real Matomo 5 install the
# end-to-end tests copy (cached per day and release).
real-matomo: ensure-db
	@./scripts/ensure-php.sh
	$(GO) run ./internal/realmatomo/prepare

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...

ensure-db:
	@./scripts/ensure-db.sh

demo: ensure-db build
	./scripts/demo.sh

bench: ensure-db
	$(GO) run ./internal/bench $(BENCH_ARGS)

bench-large: ensure-db
	$(GO) run ./internal/bench --sites 1000 --days 400 --visits 20000000 $(BENCH_ARGS)

# The package's binary carries the package version and is static.
deb:
	CGO_ENABLED=0 $(MAKE) --no-print-directory build VERSION=$(DEB_VERSION)
	./packaging/deb/build.sh bin/matomod $(DEB_VERSION) dist

deb-test: deb
	./packaging/test/deb-test.sh dist/matomod_$(DEB_VERSION)_amd64.deb

clean:
	rm -rf bin dist
