#!/usr/bin/env bash
# A real two-node Ray cluster on this machine, addressed over loopback, to try `raytrain sweep --address ...`
# and `raytrain submit` without a cloud, and for tests/test_cluster_script.py.
#
#   cluster/local_cluster.sh start [--workers 1] [--port 6390] [--dashboard-port 8275]
#   cluster/local_cluster.sh status [--port 6390]
#   cluster/local_cluster.sh stop   [--port 6390]
#
# Env overrides: RAY_BIN (default: `ray` on PATH), RAYTRAIN_CLUSTER_PORT, RAYTRAIN_CLUSTER_DASHBOARD_PORT,
# RAYTRAIN_CLUSTER_CLIENT_PORT (default port+1), RAYTRAIN_CLUSTER_WORKERS, RAYTRAIN_CLUSTER_TIMEOUT_S,
# RAYTRAIN_CLUSTER_DIR (Ray's --temp-dir; default /tmp/raytrain-cluster-<port>), RAY_AUTH_MODE.
#
# Clients (drivers, `ray status`, `ray job submit`, `raytrain submit`) must run with RAY_AUTH_MODE=token:
# Ray 2.60 enables token auth by default, and a client given an explicit address does not turn it on by
# itself. The token is ~/.ray/auth_token (or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH); same user, same file.
set -euo pipefail

usage() { sed -n '5,7p' "$0" | sed 's/^# *//' >&2; exit 2; }

cmd="${1:-}"; [[ -n "$cmd" ]] || usage; shift
port="${RAYTRAIN_CLUSTER_PORT:-6390}"               # not Ray's 6379, so a default `ray start` never clashes
dashboard_port="${RAYTRAIN_CLUSTER_DASHBOARD_PORT:-8275}"   # not Ray's 8265, for the same reason
workers="${RAYTRAIN_CLUSTER_WORKERS:-1}"
timeout_s="${RAYTRAIN_CLUSTER_TIMEOUT_S:-60}"        # both nodes are up in ~15 s on a 2-core box
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --dashboard-port) dashboard_port="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "local_cluster.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
for n in "$port" "$dashboard_port" "$workers" "$timeout_s"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "local_cluster.sh: '$n' is not a number" >&2; exit 2; }
done
(( port < 65535 && dashboard_port <= 65535 )) || { echo "local_cluster.sh: ports must be below 65536" >&2; exit 2; }
client_port="${RAYTRAIN_CLUSTER_CLIENT_PORT:-$((port + 1))}"
# A temp dir of its own: session files, sockets and logs never mix with a test's own ray.init()
# (which uses /tmp/ray), and `stop` can find exactly this cluster's processes by it.
temp_dir="${RAYTRAIN_CLUSTER_DIR:-/tmp/raytrain-cluster-$port}"
ray_bin="${RAY_BIN:-ray}"
command -v "$ray_bin" >/dev/null || { echo "local_cluster.sh: '$ray_bin' not found; put a venv with ray on PATH or set RAY_BIN" >&2; exit 1; }
# Token auth unless the caller explicitly chose otherwise. Every ray command below gets the mode from the
# environment of this script only: nothing is exported to the caller's shell.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# This cluster's processes: those whose arguments point into its temp dir (gcs_server, raylets, dashboard,
# monitors), the Ray client server (the only one that names just the GCS port), and all their descendants
# (workers and agents rename themselves `ray::...`). Never `ray stop`: it kills every Ray on the machine,
# including a test session's own ray.init().
cluster_pids() {
  local roots
  roots="$(pgrep -f -- "-[-a-z_]+=${temp_dir}(/| |$)" || true) $(pgrep -f -- "ray\.util\.client\.server --address=[^ ]+:${port} " || true)"
  # Zombies are skipped: they are already dead and only wait for PID 1 to reap them.
  ps -eo pid=,ppid=,stat= | awk -v roots="$roots" '
    BEGIN { n = split(roots, r, /[ \n]+/); for (i = 1; i <= n; i++) if (r[i] != "") keep[r[i]] = 1 }
    $3 !~ /^Z/ { parent[$1] = $2 }
    END { do { grew = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 } } while (grew)
          for (p in keep) if (p in parent) print p }'
}

stop_cluster() {
  local pids
  pids="$(cluster_pids)"
  if [[ -z "$pids" ]]; then echo "no Ray cluster with temp dir $temp_dir is running"; return 0; fi
  # SIGKILL, as `ray stop --force` does: a raylet can take over 5 s to honour SIGTERM, and this
  # throwaway cluster has no state worth a graceful shutdown (Tune keeps its own on storage).
  # Repeated until none is left, in case a raylet forked a worker between listing and killing.
  for _ in $(seq 1 100); do
    # shellcheck disable=SC2086  # one pid per word
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1; pids="$(cluster_pids)"; [[ -z "$pids" ]] && break
  done
  [[ -z "$(cluster_pids)" ]] || { echo "local_cluster.sh: these processes survived SIGKILL: $(cluster_pids | tr '\n' ' ')" >&2; return 1; }
  echo "stopped the Ray cluster at 127.0.0.1:$port (logs kept in $temp_dir/session_latest/logs)"
}

# Counts the nodes `ray status` lists before its "Pending:" section (the autoscaler refreshes it every ~5 s).
alive_nodes() {
  { timeout 20 "$ray_bin" status --address "127.0.0.1:$port" 2>/dev/null || true; } \
    | awk '/^Pending:/ { exit } / node_[0-9a-f]+/ { n++ } END { print n + 0 }'
}

print_addresses() {
  # `status` and `stop` are given only --port: the other ports come from what `start` recorded.
  # shellcheck disable=SC1091
  [[ -f "$temp_dir/ports" ]] && source "$temp_dir/ports"
  cat <<EOF
Ray cluster on loopback, temp dir $temp_dir
  GCS address   127.0.0.1:$port            (driver: ray.init(address="127.0.0.1:$port"), raytrain sweep --address 127.0.0.1:$port)
  job server    http://127.0.0.1:$dashboard_port     (dashboard; raytrain submit / ray job submit --address http://127.0.0.1:$dashboard_port)
  Ray client    ray://127.0.0.1:$client_port
  auth          every client needs RAY_AUTH_MODE=$RAY_AUTH_MODE (token file ~/.ray/auth_token), e.g.
                RAY_AUTH_MODE=$RAY_AUTH_MODE ray status --address 127.0.0.1:$port
  stop with     $0 stop --port $port
EOF
}

fail() { echo "local_cluster.sh: $*" >&2; stop_cluster >&2; exit 1; }

case "$cmd" in
  start)
    for p in "$port" "$dashboard_port" "$client_port"; do
      listening "$p" && { echo "local_cluster.sh: port $p on 127.0.0.1 is already in use (a cluster already up? '$0 status --port $port')" >&2; exit 1; }
    done
    [[ -z "$(cluster_pids)" ]] || { echo "local_cluster.sh: processes of a cluster in $temp_dir are still running; '$0 stop --port $port' first" >&2; exit 1; }
    mkdir -p "$temp_dir"
    # ray start only reads an existing token (ray.init() would create one): make sure there is one.
    if [[ "$RAY_AUTH_MODE" == token ]] && ! "$ray_bin" get-auth-token >/dev/null 2>&1; then
      "$ray_bin" get-auth-token --generate >/dev/null 2>&1   # prints the token: keep it out of logs
      chmod 600 ~/.ray/auth_token   # Ray writes it world-readable; it is the key to run code on the cluster
    fi
    # --node-ip-address is not given: for `ray start`, Ray 2.60 swaps 127.0.0.1 for the host's routable IP
    # anyway. The dashboard (job server) stays on loopback; the GCS port listens on all interfaces (Ray's
    # choice): use it on a trusted network only. --num-gpus 0: both nodes would claim this machine's GPUs.
    # --dashboard-agent-listen-port 0 (a free port): every node's agent defaults to 52365, so a second node
    # or any other Ray on this machine takes it first, and the head's job server then fails each
    # submission with "No available agent to submit job".
    "$ray_bin" start --head --port "$port" --num-cpus 1 --num-gpus 0 \
      --dashboard-host 127.0.0.1 --dashboard-port "$dashboard_port" --ray-client-server-port "$client_port" \
      --dashboard-agent-listen-port 0 --temp-dir "$temp_dir" --disable-usage-stats >"$temp_dir/start-head.log" 2>&1 \
      || fail "the head did not start; see $temp_dir/start-head.log"
    # Each worker node gets a temp dir of its own, as separate machines would: nodes sharing one
    # would share runtime_resources/, and a worker node deleting a job's unpacked working_dir when
    # its own trials end pulls the directory out from under the job's driver on the head.
    for i in $(seq 1 "$workers"); do
      mkdir -p "$temp_dir/w$i"
      "$ray_bin" start --address "127.0.0.1:$port" --num-cpus 1 --num-gpus 0 \
        --dashboard-agent-listen-port 0 --temp-dir "$temp_dir/w$i" --disable-usage-stats >"$temp_dir/start-worker-$i.log" 2>&1 \
        || fail "worker node $i did not join; see $temp_dir/start-worker-$i.log"
    done
    printf 'dashboard_port=%s\nclient_port=%s\n' "$dashboard_port" "$client_port" >"$temp_dir/ports"
    want=$((workers + 1)); deadline=$((SECONDS + timeout_s))
    until [[ "$(alive_nodes)" -ge "$want" ]]; do
      (( SECONDS < deadline )) || fail "only $(alive_nodes) of $want nodes came up within ${timeout_s}s; logs in $temp_dir/session_latest/logs"
      sleep 1
    done
    # `ray start` succeeds without a dashboard when it cannot start one (port taken, ray[default] not
    # installed): without it there is no job server, so `raytrain submit` would fail later, less clearly.
    until listening "$dashboard_port"; do
      (( SECONDS < deadline )) || fail "the job server did not come up on 127.0.0.1:$dashboard_port within ${timeout_s}s (is ray[default] installed?); see $temp_dir/session_latest/logs/dashboard.log"
      sleep 1
    done
    echo "$want nodes up (head + $workers worker), 1 CPU each"
    print_addresses
    ;;
  status)
    listening "$port" || { echo "no Ray cluster listens on 127.0.0.1:$port"; exit 1; }
    timeout 30 "$ray_bin" status --address "127.0.0.1:$port"
    print_addresses
    ;;
  stop) stop_cluster ;;
  *) usage ;;
esac
