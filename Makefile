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
