#!/usr/bin/env bash
# A real Docker Swarm on one machine, for meshd's tests: one network namespace
# and one dockerd per node, every node on one bridge (one L2 segment, like real
# nodes on a LAN). Needs root and Debian's docker.io and busybox-static.
#
#   lab.sh up [N]          clean leftovers, start N nodes (node1 manager), print exports
#   lab.sh down            tear everything down by process id; safe to run any time
#   lab.sh image-load IMG  copy an image from node1 to every other node
#
# `up` prints, as its last lines, shell-sourceable exports: MESHLAB_NODES,
# MESHLAB_DIR and per node MESHLAB_NODEk_SOCK, MESHLAB_NODEk_ADDR (10.77.0.(10+k))
# and MESHLAB_NODEk_NETNS. Node k's state lives in $MESHLAB_DIR/nk/ (dockerd.log,
# docker.pid, root/, exec/, run/docker.sock, and docker.sock, a link to the latter).
# Each node's containers sit in the cgroup /meshlab-nk, so that teardown finds
# them even after their engine was killed. Every node has the image
# meshlab/busybox:latest (busybox-static: sh, httpd, nc, ...) and the attachable
# overlay network `meshd` exists. An `up` that fails tears down what it started,
# unless MESHLAB_KEEP=1. Logs go to stderr; stdout carries only the exports.
set -euo pipefail

DIR=${MESHLAB_DIR:-/tmp/meshlab}
DIR=${DIR%/}
case "$DIR" in
  /?*/?* | /tmp?*) ;;
  *) echo "lab: MESHLAB_DIR=$DIR: want an absolute path at least two levels deep (it is removed on down)" >&2; exit 2 ;;
esac
BRIDGE=meshlab0
SUBNET_PREFIX=10.77.0
HOST_ADDR=$SUBNET_PREFIX.1
IMAGE=meshlab/busybox:latest

node_addr() { echo "$SUBNET_PREFIX.$((10 + $1))"; }
node_ns() { echo "meshlab-node$1"; }
sock() { echo "$DIR/n$1/run/docker.sock"; }
dk() { local n=$1; shift; docker -H "unix://$(sock "$n")" "$@"; }
log() { echo "lab: $*" >&2; }

# Nodes that exist now, from the state dir or the namespaces (an interrupted run may have left either).
existing_nodes() {
  { ls -d "$DIR"/n[0-9]* 2>/dev/null | sed "s#.*/n##"; ip netns list 2>/dev/null | sed -n 's/^meshlab-node\([0-9]*\).*/\1/p'; } | sort -un
}

# Gone, or a zombie waiting for its parent (init, once the starting shell exited) to reap it.
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^Z'; }

wait_gone() { # pid, seconds
  local pid=$1 i
  for ((i = 0; i < $2 * 10; i++)); do alive "$pid" || return 0; sleep 0.1; done
  return 1
}

# Containers outlive a killed dockerd and its shims. Each node's engine puts its
# containers in the cgroup /meshlab-nK (--cgroup-parent): kill what is left there.
# Older labs used Docker's default parent /docker: there, kill the lab's own
# containers, and, when no dockerd runs on this machine, those of any container
# (leftovers of a lab whose folders are already gone).
kill_container_processes() {
  local ids procs id f dirs=()
  for f in /sys/fs/cgroup/*/meshlab-n[0-9]*/*/cgroup.procs /sys/fs/cgroup/meshlab-n[0-9]*/*/cgroup.procs; do
    [ -f "$f" ] || continue
    procs=$(cat "$f")
    [ -n "$procs" ] && kill -9 $procs 2>/dev/null || true
  done
  ids=$(ls "$DIR"/n[0-9]*/root/containers 2>/dev/null || true)
  if ! pgrep -x dockerd >/dev/null 2>&1; then ids="$ids $(ls /sys/fs/cgroup/pids/docker /sys/fs/cgroup/docker 2>/dev/null | grep -E '^[0-9a-f]{64}$' || true)"; fi
  for id in $ids; do
    for f in /sys/fs/cgroup/*/docker/"$id"/cgroup.procs /sys/fs/cgroup/docker/"$id"/cgroup.procs; do
      [ -f "$f" ] || continue
      procs=$(cat "$f")
      [ -n "$procs" ] && kill -9 $procs 2>/dev/null || true
    done
  done
  # A killed process leaves its cgroup only once it is reaped: retry the rmdir briefly.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    dirs=()
    for f in /sys/fs/cgroup/*/meshlab-n[0-9]*/*/ /sys/fs/cgroup/meshlab-n[0-9]*/*/ /sys/fs/cgroup/*/meshlab-n[0-9]*/ /sys/fs/cgroup/meshlab-n[0-9]*/; do
      [ -d "$f" ] && { rmdir "$f" 2>/dev/null || dirs+=("$f"); }
    done
    [ ${#dirs[@]} = 0 ] && break
    sleep 0.2
  done
  for f in /sys/fs/cgroup/*/docker/*/ /sys/fs/cgroup/docker/*/; do rmdir "$f" 2>/dev/null || true; done
}

# The lab's own daemons still running: dockerd, containerd and the shims, which
# name a path under $DIR on their command line. Only those programs, never a
# shell or tool that merely mentions the folder.
lab_daemon_pids() {
  local pid comm
  for pid in $(pgrep -f -- "$DIR/" 2>/dev/null || true); do
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    case "$comm" in dockerd | containerd | containerd-shim* | runc | docker-proxy) echo "$pid" ;; esac
  done
}

down() {
  local n pid svcs
  # Services first (only a manager answers; a worker's refusal is ignored), then leave the swarm.
  for n in $(existing_nodes); do
    [ -S "$(sock "$n")" ] || continue
    svcs=$(timeout 10 docker -H "unix://$(sock "$n")" service ls -q 2>/dev/null || true)
    if [ -n "$svcs" ]; then timeout 20 docker -H "unix://$(sock "$n")" service rm $svcs >/dev/null 2>&1 || true; fi
  done
  for n in $(existing_nodes); do
    if [ -S "$(sock "$n")" ]; then
      timeout 10 docker -H "unix://$(sock "$n")" swarm leave --force >/dev/null 2>&1 || true
    fi
  done
  for n in $(existing_nodes); do
    pid=$(cat "$DIR/n$n/docker.pid" 2>/dev/null || true)
    # The pidfile may be stale: act only on a live dockerd with that pid.
    if [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
      kill "$pid" 2>/dev/null || true
      wait_gone "$pid" 20 || { log "dockerd $pid did not stop; killing it"; kill -9 "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
    fi
  done
  # Anything else still running from the lab's folders: containerd and its shims
  # (a dockerd killed with SIGKILL leaves them behind).
  for pid in $(lab_daemon_pids); do kill -9 "$pid" 2>/dev/null || true; done
  for pid in $(lab_daemon_pids); do wait_gone "$pid" 5 || true; done
  kill_container_processes
  if [ -d "$DIR" ]; then
    # Unmount deepest first: netns files, overlay layers, shm mounts.
    awk -v d="$DIR/" 'index($2, d) == 1 || $2 == substr(d, 1, length(d) - 1) {print $2}' /proc/mounts \
      | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  for ns in $(ip netns list 2>/dev/null | awk '/^meshlab-node/ {print $1}'); do ip netns delete "$ns" 2>/dev/null || true; done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '/ mlv[0-9]+@| mlv[0-9]+:/ {sub(/@.*/, "", $2); print $2}'); do ip link delete "$link" 2>/dev/null || true; done
  ip link delete "$BRIDGE" 2>/dev/null || true
  # Our FORWARD rule, and the NAT that images.sh adds (left behind if it was cut off).
  for _ in 1 2 3 4 5 6 7 8; do
    iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null \
      || iptables -D FORWARD -s "$SUBNET_PREFIX.0/24" -j ACCEPT 2>/dev/null \
      || iptables -D FORWARD -d "$SUBNET_PREFIX.0/24" -j ACCEPT 2>/dev/null \
      || iptables -t nat -D POSTROUTING -s "$SUBNET_PREFIX.0/24" ! -d "$SUBNET_PREFIX.0/24" -j MASQUERADE 2>/dev/null \
      || break
  done
  rm -rf "$DIR"
}

check_tools() {
  local missing=()
  for t in dockerd docker containerd ip iptables nsenter unshare pgrep; do command -v "$t" >/dev/null || missing+=("$t"); done
  [ -x /bin/busybox ] || missing+=(/bin/busybox)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "lab: missing ${missing[*]}: run apt-get install -y docker.io busybox-static (and iproute2 iptables procps if those are missing)" >&2
    exit 3
  fi
  [ "$(id -u)" = 0 ] || { echo "lab: must run as root (namespaces, bridges, dockerd)" >&2; exit 3; }
}

start_node() {
  local n=$1 ns addr d
  ns=$(node_ns "$n"); addr=$(node_addr "$n"); d=$DIR/n$n
  mkdir -p "$d"
  ip netns add "$ns"
  ip link add "mlv$n" type veth peer name eth0 netns "$ns"
  ip link set "mlv$n" master "$BRIDGE" up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via "$HOST_ADDR"
  # nsenter, not `ip netns exec`: the latter remounts /sys and dockerd loses its
  # cgroups. A private mount namespace gives each node its own /run, so the
  # engine answers on /var/run/docker.sock inside the node (what a stack file
  # mounts into meshd) while the tests reach it at $d/run/docker.sock.
  mkdir -p "$d/run"
  ln -sfn run/docker.sock "$d/docker.sock"
  # Each engine has its own namespace, hence its own docker0 and docker_gwbridge:
  # the default addresses do not clash (checked), so no --bip is needed.
  DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 nohup nsenter --net="/var/run/netns/$ns" unshare --uts --mount --propagation private sh -c "
      hostname node$n
      mount --bind $d/run /run
      exec dockerd --host unix:///var/run/docker.sock --data-root $d/root --exec-root $d/exec \
        --pidfile $d/docker.pid --storage-driver overlay2 \
        --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent /meshlab-n$n" >"$d/dockerd.log" 2>&1 &
  echo $! >"$d/launcher.pid" # nsenter, unshare and sh each exec the next: this becomes dockerd
}

wait_engine() {
  local n=$1 i
  for ((i = 0; i < 300; i++)); do
    dk "$n" info >/dev/null 2>&1 && return 0
    alive "$(cat "$DIR/n$n/launcher.pid")" || { log "node$n's dockerd exited; its log:"; tail -20 "$DIR/n$n/dockerd.log" >&2; return 1; }
    sleep 0.1
  done
  log "node$n's engine did not answer in 30 s; its log:"
  tail -20 "$DIR/n$n/dockerd.log" >&2
  return 1
}

import_busybox() {
  local n=$1 root=$DIR/busybox-root
  if [ ! -f "$DIR/busybox.tar" ]; then
    mkdir -p "$root/bin" "$root/tmp" "$root/www" "$root/etc"
    cp /bin/busybox "$root/bin/busybox"
    for app in $(/bin/busybox --list); do [ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"; done
    echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
    echo "hello from meshlab" >"$root/www/index.html"
    tar -C "$root" -cf "$DIR/busybox.tar" .
  fi
  dk "$n" import -c 'CMD ["sh"]' -c 'ENV PATH=/bin' "$DIR/busybox.tar" "$IMAGE" >/dev/null
}

up() {
  local nodes=${1:-1} n token
  [[ "$nodes" =~ ^[1-9][0-9]?$ ]] || { echo "lab: up wants a node count from 1 to 99, not '$nodes'" >&2; exit 2; }
  check_tools
  down
  # A start that fails half-way leaves nothing behind (set MESHLAB_KEEP=1 to look at it).
  trap 'rc=$?; if [ "$rc" != 0 ] && [ "${MESHLAB_KEEP:-}" != 1 ]; then log "up failed; tearing down"; down; fi' EXIT
  mkdir -p "$DIR"
  ip link add "$BRIDGE" type bridge
  ip addr add "$HOST_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Nodes talk to each other across the bridge (gossip 7946, VXLAN 4789) even
  # though dockerd sets the FORWARD policy to DROP.
  iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  for ((n = 1; n <= nodes; n++)); do start_node "$n"; done
  for ((n = 1; n <= nodes; n++)); do wait_engine "$n"; done
  dk 1 swarm init --advertise-addr "$(node_addr 1)" >/dev/null
  token=$(dk 1 swarm join-token -q worker)
  for ((n = 2; n <= nodes; n++)); do dk "$n" swarm join --token "$token" "$(node_addr 1):2377" >/dev/null; done
  for ((n = 1; n <= nodes; n++)); do import_busybox "$n"; done
  dk 1 network create -d overlay --attachable meshd >/dev/null
  for ((n = 0; ; n++)); do
    [ "$(dk 1 node ls --format '{{.Status}}' | grep -c Ready)" = "$nodes" ] && break
    if ((n >= 150)); then log "not all $nodes nodes Ready after 30 s:"; dk 1 node ls >&2; exit 1; fi
    sleep 0.2
  done
  echo "export MESHLAB_NODES=$nodes"
  echo "export MESHLAB_DIR=$DIR"
  for ((n = 1; n <= nodes; n++)); do
    echo "export MESHLAB_NODE${n}_SOCK=$(sock "$n")"
    echo "export MESHLAB_NODE${n}_ADDR=$(node_addr "$n")"
    echo "export MESHLAB_NODE${n}_NETNS=$(node_ns "$n")"
  done
  trap - EXIT
}

image_load() {
  local img=$1 n
  dk 1 image inspect "$img" >/dev/null 2>&1 || { log "image $img is not on node1"; exit 1; }
  for n in $(existing_nodes); do
    [ "$n" = 1 ] && continue
    dk 1 save "$img" | dk "$n" load >/dev/null
  done
}

case "${1:-}" in
  up) up "${2:-1}" ;;
  down) down ;;
  image-load) image_load "${2:?image name}" ;;
  *) echo "usage: lab.sh up [N] | down | image-load IMAGE" >&2; exit 2 ;;
esac
