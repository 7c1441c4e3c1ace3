#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it via executable_path; Playwright's
# own browser download is not used). Installs with apt when missing and running as root.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is missing: install Debian's 'chromium' package (browser tests will be skipped)." >&2
  # In CI a skipped browser test would check nothing: fail instead.
  [ -z "${CI:-}" ] || exit 1
  exit 0
fi
echo "Installing Chromium for the browser tests (apt-get install chromium)..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
