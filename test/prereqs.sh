#!/usr/bin/env bash
# The Debian packages the test suite drives for real: Docker engines for the
# swarm lab, busybox and redis for its images, pebble for ACME, openssl and curl
# as clients, chromium for the dashboard. Run as root, it installs what is missing; otherwise it names the
# missing packages in one line and fails.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have dockerd || need+=(docker.io)
[ -x /bin/busybox ] || need+=(busybox-static)
have ip || need+=(iproute2)
have iptables || need+=(iptables)
have curl || need+=(curl)
have redis-server || have redis-check-rdb || need+=(redis-tools)
{ have sysctl && have pgrep; } || need+=(procps)
have pebble || need+=(pebble)
have openssl || need+=(openssl)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "meshd tests need these Debian packages (run as root to install them): ${need[*]}" >&2
  exit 1
fi
echo "installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
