#!/bin/sh
# Prints the version `make dist` stamps into the binaries and the .deb, in
# the semver form nfpm turns into a Debian version: a v1.2.3 tag on HEAD
# gives 1.2.3 (.deb 1.2.3-1); otherwise 0.1.0-dev+<commit> (.deb
# 0.1.0~dev+<commit>-1, which sorts before any 0.1.0 release).
set -eu
cd "$(dirname "$0")/.."
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
  echo "${tag#v}"
elif sha=$(git rev-parse --short=12 HEAD 2>/dev/null); then
  echo "0.1.0-dev+$sha"
else
  echo "0.1.0-dev"
fi
