#!/usr/bin/env bash
# The browser test (tests/records/test_mlflow_ui.py) drives Debian's Chromium through Playwright; this
# installs the `chromium` package when it is missing (as root, or with sudo). Safe to run again.
set -euo pipefail
chromium=${HARNESS_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "setup: no Chromium at $chromium and no apt-get: install Chromium and set HARNESS_CHROMIUM" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root to install chromium" >&2; exit 0; }
  sudo="sudo"
fi
echo "setup: installing Debian's chromium for the browser test"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "setup: chromium $("$chromium" --version 2>/dev/null | awk '{print $2}')"
