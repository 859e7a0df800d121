#!/usr/bin/env bash
# The test command. On a fresh machine it installs what the tests need (the system packages below, a
# virtual environment with the package and its test extra), then runs pytest with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the tests use for real: a Redis server; promtool and prometheus (the deploy checks).
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends "${need[@]}"; }
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
[ -x .venv/bin/dvm-sidecar ] || { echo "install failed: .venv/bin/dvm-sidecar missing" >&2; exit 1; }

# pytest's own exit code is the result: 5 (no tests collected) fails the run.
exec .venv/bin/python -m pytest "$@"
