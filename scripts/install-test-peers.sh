#!/usr/bin/env bash
# Installs the third-party programs the test suite talks to, when missing:
# swaks (an SMTP client nobody here wrote), Python 3 (smtplib), Postfix's
# smtp-sink (an SMTP server nobody here wrote; the package is installed
# without configuring or starting a system Postfix), HAProxy (a TCP load
# balancer that speaks the PROXY protocol), and from npm into
# ./node_modules aws-ses-v2-local (a local SES v2 API) and nodemailer; and
# systemd-analyze (Debian's systemd package: `verify` needs no booted
# systemd) for the unit file's test. As a non-root user it uses sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# HAProxy (TCP mode, send-proxy-v2) fronts the daemon in the PROXY protocol
# test, which runs its own haproxy as the current user on high ports. The
# package's system service (if the host starts it) runs Debian's default
# config, which binds no port.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
# The dashboard's browser tests drive Debian's chromium headless (chromedp).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test peers: ${need[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections 2>/dev/null || true
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Both in one command: without a package.json, npm removes what an earlier
# --no-save install put in node_modules.
# axe-core is the accessibility checker the dashboard's browser test runs
# inside the page (MPL-2.0; read by the test only, never served).
npm_peers=(aws-ses-v2-local@2.10.2 nodemailer@10.6.0 axe-core@4.14.1)
if [ ! -x node_modules/.bin/aws-ses-v2-local ] ||
  [ "$(node -p 'require("./node_modules/nodemailer/package.json").version' 2>/dev/null)" != "10.6.0" ] ||
  [ "$(node -p 'require("./node_modules/axe-core/package.json").version' 2>/dev/null)" != "4.14.1" ]; then
  echo "installing test peers (npm): ${npm_peers[*]}"
  npm install --no-save --no-audit --no-fund --silent "${npm_peers[@]}"
fi
# etcd for the cluster-mode tests: built from its Go module at the version
# pinned (with checksums) in scripts/peers/etcd/go.mod, into .peers/bin.
# internal/etcdtest starts real members from it.
etcd_version=v3.7.3
if [ "$(.peers/bin/etcd --version 2>/dev/null | awk '/^etcd Version/{print "v"$3}')" != "$etcd_version" ]; then
  echo "building test peer: etcd $etcd_version (Go module, about a minute)"
  mkdir -p .peers/bin
  (cd scripts/peers/etcd && go build -o ../../../.peers/bin/etcd go.etcd.io/etcd/server/v3)
fi
