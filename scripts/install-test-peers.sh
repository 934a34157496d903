#!/usr/bin/env bash
# Installs the third-party programs the test suite talks to, when missing:
# swaks (an SMTP client nobody here wrote) and Python 3 (smtplib).
# Debian packages; runs apt only when something is missing.
set -euo pipefail
need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test peers: ${need[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
