# `make test` is the one test command: it installs the test peers that are
# missing (scripts/install-test-peers.sh: swaks, python3, Postfix's
# smtp-sink, curl, systemd-analyze, and from npm nodemailer and
# aws-ses-v2-local) and runs the whole suite. .ci/run calls it.
GO ?= go

.PHONY: test test-peers build run bench

test: test-peers
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	cd third_party/go-smtp && $(GO) vet . && $(GO) test -count=1 .
	cd third_party/bbolt && $(GO) test -count=1 -short -run 'Seek|Insert|Cursor|Bucket|Tx|Node' \
		-skip 'ValueTooLarge|MoveBucket|TruncateBeforeWrite' . && $(GO) test -count=1 ./internal/freelist

test-peers:
	./scripts/install-test-peers.sh

# The version "smtpmux version" prints: the nearest tag and commit.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
OUT ?= smtpmux

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(OUT) ./cmd/smtpmux

run:
	$(GO) run ./cmd/smtpmux serve --config config.example.toml

bench:
	./bench/run.sh

# `make dist`: static linux/amd64 and linux/arm64 binaries, a .deb for each
# (packaging/build-deb.sh, which pins nfpm) and dist/SHA256SUMS.
# DIST_LDFLAGS is the place to add more -X stamps.
DIST_ARCHES ?= amd64 arm64
DIST_VERSION ?= $(shell ./packaging/version.sh)
DIST_LDFLAGS ?= -s -w -X main.version=$(DIST_VERSION)

.PHONY: dist
dist:
	rm -rf dist && mkdir -p dist
	set -e; for arch in $(DIST_ARCHES); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(DIST_LDFLAGS)' \
			-o dist/smtpmux-linux-$$arch ./cmd/smtpmux; \
		./packaging/build-deb.sh $$arch dist/smtpmux-linux-$$arch dist $(DIST_VERSION) >/dev/null; \
	done
	cd dist && sha256sum smtpmux-linux-* *.deb >SHA256SUMS && cat SHA256SUMS
