# `make test` is the one test command: it installs the test peers that are
# missing (swaks, python3) and runs the whole suite. .ci/run calls it.
GO ?= go

.PHONY: test test-peers build run bench

test: test-peers
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	cd third_party/go-smtp && $(GO) vet . && $(GO) test -count=1 .

test-peers:
	./scripts/install-test-peers.sh

build:
	$(GO) build -o smtpmux ./cmd/smtpmux

run:
	$(GO) run ./cmd/smtpmux serve --config config.example.toml

bench:
	./bench/run.sh
