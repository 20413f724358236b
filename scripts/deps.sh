#!/usr/bin/env bash
# Installs what building and testing Seshat needs and a fresh Debian/Ubuntu
# machine may lack: libclang (RocksDB's bindgen), the Redis command-line
# tools and redis-py (used by the integration tests). Idempotent: does
# nothing when everything is present.
set -euo pipefail

need_apt=()
# bindgen loads libclang at run time; clang provides its headers.
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
  need_apt+=(clang libclang-dev)
fi
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
# Test and benchmark certificates for TLS (tests/tls.rs, bench.sh).
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The chaos tests build private networks: namespaces, veth, iptables.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)

if ((${#need_apt[@]})); then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      echo "deps: please install: ${need_apt[*]} (apt-get needs root)" >&2
      exit 1
    fi
  fi
  echo "deps: installing ${need_apt[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts redis-server as a service on install; the tests start
  # their own servers and must not find port 6379 taken.
  if command -v systemctl >/dev/null 2>&1; then $sudo systemctl stop redis-server >/dev/null 2>&1 || true; fi
  if command -v service >/dev/null 2>&1; then $sudo service redis-server stop >/dev/null 2>&1 || true; fi
fi

if ! python3 -c 'import redis, sys; sys.exit(0 if int(redis.__version__.split(".")[0]) >= 8 else 1)' 2>/dev/null; then
  echo "deps: installing redis-py 8" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'redis>=8,<9' 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'redis>=8,<9'
fi
