#!/usr/bin/env bash
# Installs the third-party programs the test suite talks to, when missing:
# swaks (an SMTP client nobody here wrote), Python 3 (smtplib), and
# aws-ses-v2-local (a local SES v2 API, from npm, into ./node_modules).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test peers: ${need[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x node_modules/.bin/aws-ses-v2-local ]; then
  echo "installing test peer: aws-ses-v2-local (npm)"
  npm install --no-save --no-audit --no-fund --silent aws-ses-v2-local@2.10.2
fi
