#!/bin/sh
# Install Debian's redis-server for the push-dispatch tests (they start their own server on a
# loopback port; the package's own service is never used).
#
# Idempotent and quiet: does nothing when /usr/bin/redis-server is already there, and prints
# apt's output only when the install fails. Needs root (CI and the development machines run as
# root) and Debian's package mirror.
set -eu

REDIS=/usr/bin/redis-server

if [ -x "$REDIS" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install_redis: $REDIS is missing; run this script as root to install it" >&2
    exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && RUNLEVEL=1 apt-get install -y -qq --no-install-recommends \
        redis-server; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install_redis: apt-get could not install redis-server" >&2
    exit 1
fi

if [ ! -x "$REDIS" ]; then
    echo "install_redis: apt-get finished but $REDIS is still missing" >&2
    exit 1
fi
