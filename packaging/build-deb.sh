#!/bin/sh
# build-deb.sh ARCH BINARY OUTDIR VERSION
#
# Builds OUTDIR/smtpmux_<debversion>_<ARCH>.deb around BINARY (a static
# linux/ARCH smtpmux, as `make dist` builds it) and prints its path. The
# packaged config and unit are derived here from the repository's
# config.example.toml and systemd/smtpmux.service, so they cannot drift
# from what the rest of the docs describe.
#
# nfpm runs pinned at v2.48.0 through the Go module proxy (`go run
# pkg@version`), outside the main module's go.mod: it pulls in about a
# hundred modules the daemon does not need. Set NFPM to use another nfpm.
set -eu

if [ $# -ne 4 ]; then
  echo "usage: $0 ARCH BINARY OUTDIR VERSION" >&2
  exit 2
fi
arch=$1 bin=$2 out=$3 version=$4
repo=$(cd "$(dirname "$0")/.." && pwd)
case $bin in /*) ;; *) bin=$(pwd)/$bin ;; esac
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
NFPM=${NFPM:-go run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

install -m 0755 "$bin" "$stage/smtpmux"
# The packaged unit runs the packaged binary; the hardening is unchanged.
sed 's#/usr/local/bin/smtpmux#/usr/bin/smtpmux#g' "$repo/systemd/smtpmux.service" >"$stage/smtpmux.service"
# The packaged config is the example with the store under /var/lib/smtpmux
# (the unit's StateDirectory) and a header saying what to edit first. Its
# listeners stay on loopback, so a service started before it is edited
# exposes nothing.
awk '
  NR == 1 {
    print "# Installed by the smtpmux package (a conffile: upgrades keep your edits)."
    print "# Before `systemctl enable --now smtpmux`: set hostname, smtp.listen"
    print "# (e.g. [\"0.0.0.0:587\"]) and the TLS files, then run"
    print "# `smtpmux check-config --config /etc/smtpmux/config.toml`."
    print "#"
  }
  /^# This file starts a working daemon/ { next }
  /^data_dir = "\.\/data"/ { sub(/"\.\/data"/, "\"/var/lib/smtpmux\""); found = 1 }
  { print }
  END { if (!found) { print "config.example.toml has no data_dir = \"./data\" line" > "/dev/stderr"; exit 1 } }
' "$repo/config.example.toml" >"$stage/config.toml"
cp "$repo/README.md" "$stage/README.md"
cp "$repo/systemd/README.md" "$stage/README.systemd.md"
cp "$repo/packaging/copyright" "$stage/copyright"
cp "$repo/packaging/lintian-overrides" "$stage/lintian-overrides"

mkdir -p "$out"
cd "$repo"
# File times in the package are the commit's, so a rebuild of the same
# commit gives the same .deb.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
# Debian wants a changelog whose top entry is the package's version: nfpm
# makes 1.2.3-rc1+meta into 1.2.3~rc1+meta, release 1.
debversion=$(echo "$version" | sed 's/-/~/')-1
{
  echo "smtpmux ($debversion) unstable; urgency=medium"
  echo
  echo "  * Built from $(git rev-parse --short=12 HEAD 2>/dev/null || echo 'an unknown commit'); see the repository history."
  echo
  echo " -- smtpmux maintainers <maintainers@smtpmux.invalid>  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$stage/changelog.Debian.gz"
SMTPMUX_ARCH=$arch SMTPMUX_VERSION=$version SMTPMUX_STAGE=$stage \
  $NFPM package --config packaging/nfpm.yaml --packager deb --target "$out" >&2
ls -t "$out"/smtpmux_*_"$arch".deb | head -n 1
