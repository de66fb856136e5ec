#!/usr/bin/env bash
# Builds the images the swarm tests deploy, inside the lab, with no registry:
#   1. node:20-bookworm-slim, imported from this machine's own node, npm and
#      libraries (the base image meshd's Dockerfile names);
#   2. meshd:latest from the project's Dockerfile (its `npm ci` reaches the npm
#      registry through NAT on the lab bridge, trusting the machine's CA bundle);
#   3. meshlab/whoami:latest, the test app;
#   4. meshlab/redis:latest, this machine's Redis server (Debian's redis-tools),
#      for the page-view counter of the classic swarm demo;
# then loads them on every node.   Usage: images.sh (after lab.sh up N)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
DIR=${MESHLAB_DIR:-/tmp/meshlab}
S=$DIR/n1/run/docker.sock
dk() { docker -H "unix://$S" "$@"; }

# Copies a binary of this machine, and the libraries it links, into an image root.
install_binary() { # binary root path-in-root
  local lib
  cp -L "$1" "$2$3"
  for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
    mkdir -p "$2$(dirname "$lib")"
    cp -L "$lib" "$2$lib"
  done
}

root=$DIR/node-root
rm -rf "$root"
mkdir -p "$root"/{bin,usr/bin,usr/lib,tmp,etc/ssl/certs,root}
install_binary "$(readlink -f "$(command -v node)")" "$root" /usr/bin/node
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
mkdir -p "$root/usr/lib/node_modules"
cp -a "$npm_dir" "$root/usr/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
cp /bin/busybox "$root/bin/busybox"
for app in sh env ls cat rm mkdir cp mv ln chmod; do ln -sf busybox "$root/bin/$app"; done
ln -sf /bin/busybox "$root/usr/bin/env"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
tar -C "$root" -cf "$DIR/node-root.tar" .
dk import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  -c 'CMD ["node"]' \
  "$DIR/node-root.tar" node:20-bookworm-slim >/dev/null

# The build's npm ci needs the registry: NAT the lab subnet out through this namespace.
sysctl -qw net.ipv4.ip_forward=1
iptables -t nat -C POSTROUTING -s 10.77.0.0/24 ! -d 10.77.0.0/24 -j MASQUERADE 2>/dev/null \
  || iptables -t nat -A POSTROUTING -s 10.77.0.0/24 ! -d 10.77.0.0/24 -j MASQUERADE
iptables -C FORWARD -s 10.77.0.0/24 -j ACCEPT 2>/dev/null || iptables -I FORWARD -s 10.77.0.0/24 -j ACCEPT
iptables -C FORWARD -d 10.77.0.0/24 -j ACCEPT 2>/dev/null || iptables -I FORWARD -d 10.77.0.0/24 -j ACCEPT
trap 'iptables -t nat -D POSTROUTING -s 10.77.0.0/24 ! -d 10.77.0.0/24 -j MASQUERADE 2>/dev/null || true
      iptables -D FORWARD -s 10.77.0.0/24 -j ACCEPT 2>/dev/null || true
      iptables -D FORWARD -d 10.77.0.0/24 -j ACCEPT 2>/dev/null || true' EXIT

# Redis: Debian ships the server as redis-check-rdb (it acts on the name it is run by).
redis_bin=$(command -v redis-server || command -v redis-check-rdb || true)
[ -n "$redis_bin" ] || { echo "images.sh: no Redis binary: apt-get install -y redis-tools" >&2; exit 3; }
rroot=$DIR/redis-root
rm -rf "$rroot"
mkdir -p "$rroot"/{usr/bin,tmp,data,etc}
install_binary "$redis_bin" "$rroot" /usr/bin/redis-server
echo "root:x:0:0:root:/data:/bin/sh" >"$rroot/etc/passwd"
tar -C "$rroot" -cf "$DIR/redis-root.tar" .
dk import -c 'WORKDIR /data' -c 'EXPOSE 6379' \
  -c 'CMD ["/usr/bin/redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no"]' \
  "$DIR/redis-root.tar" meshlab/redis:latest >/dev/null

DOCKER_BUILDKIT=0 dk build -q -t meshd:latest "$repo" >/dev/null
DOCKER_BUILDKIT=0 dk build -q -t meshlab/whoami:latest "$here/whoami" >/dev/null
images=(meshd:latest meshlab/whoami:latest meshlab/redis:latest)
for img in "${images[@]}"; do bash "$here/lab.sh" image-load "$img"; done
echo "images ready: ${images[*]}" >&2
