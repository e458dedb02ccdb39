#!/bin/sh
# Install Debian's Chromium for the dashboard's browser tests (driven by Playwright).
#
# Idempotent and quiet: does nothing when /usr/bin/chromium is already there, and prints apt's
# output only when the install fails. Needs root (CI and the development machines run as root)
# and Debian's package mirror; Playwright's own browser download (`playwright install`) is never
# used.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install_browser: $CHROMIUM is missing; run this script as root to install it" >&2
    exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium \
        fonts-dejavu-core; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install_browser: apt-get could not install chromium" >&2
    exit 1
fi

if [ ! -x "$CHROMIUM" ]; then
    echo "install_browser: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
