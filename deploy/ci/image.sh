#!/usr/bin/env bash
# CI: build the OCI image without a registry (deploy/image/build.sh), then RUN it as uid
# 65532 with a read-only root filesystem, no capabilities and no-new-privileges, and probe
# /livez, /readyz and one SCIM request against `scim-sidecar demo` (the real server in
# front of the built-in fake Zulip).
#
# Runtime: podman (Debian's package, vfs storage, host network: no daemon, no registry)
# with runc: Debian's default crun refuses this machine's hybrid cgroup v1/v2 layout
# ("cgroups in hybrid mode not supported"). If podman cannot run containers on a machine,
# the script says why and falls back to the closest equivalent: the image's own layer,
# unpacked from the OCI archive, bind-mounted read-only in a private mount namespace
# (unshare), entered with chroot(2), then setgroups/setgid/setuid to 65532 and
# no_new_privs before exec (a few lines of Python: setpriv(1) would have to run inside the
# image, which has no tools). Either way it checks from the host that the process runs as
# 65532, with no effective capabilities and no_new_privs, on a read-only `/`, and that a
# write there fails with EROFS. IMAGE_FORCE_FALLBACK=1 exercises the fallback.
#
# Needs root (CI runs as root). Env: SCIM_SIDECAR_BINARY (see build.sh), IMAGE_MAX_MB
# (default 30: fail if the compressed image is bigger).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-$PWD/target}
max_mb=${IMAGE_MAX_MB:-30}
token=ci-image-token-0123456789abcdef
port=$((20000 + RANDOM % 20000))
base=http://127.0.0.1:$port

echo "== image: build (deploy/image/build.sh)"
bash deploy/image/build.sh scim-sidecar:ci
archive=$target/image/scim-sidecar.oci.tar

# The compressed size: what a registry stores and a node pulls.
size=$(stat -c %s "$archive")
echo "image: OCI archive (gzip layer) $((size / 1024)) KiB; limit ${max_mb} MiB"
if [ "$size" -gt $((max_mb * 1024 * 1024)) ]; then
  echo "image: FAIL: larger than ${max_mb} MiB" >&2; exit 1
fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need podman || ! need runc; then
  echo "image: installing podman and runc (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc >/dev/null 2>&1 || true
fi

mode=""
pid=""
cleanup() {
  if [ "$mode" = podman ]; then
    podman --storage-driver vfs --runtime runc rm -f -t 5 scim-sidecar-ci >/dev/null 2>&1 || true
  elif [ -n "$pid" ]; then
    # unshare --fork ignores SIGTERM while it waits: signal the server itself.
    [ -z "${server:-}" ] || kill -TERM "$server" 2>/dev/null || true
    pkill -KILL -P "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  [ -z "${unpack:-}" ] || rm -rf "$unpack"
}
trap cleanup EXIT

args=(demo --listen "127.0.0.1:$port" --token "$token")

start_podman() {
  local P=(podman --storage-driver vfs --runtime runc)
  need podman && need runc || { why="podman or runc is not installed"; return 1; }
  "${P[@]}" rm -f scim-sidecar-ci >/dev/null 2>&1 || true
  "${P[@]}" rmi -f localhost/scim-sidecar:ci >/dev/null 2>&1 || true
  "${P[@]}" load -q -i "$archive" >/dev/null || { why="podman load failed"; return 1; }
  # --ulimit: podman's defaults (nofile 1048576) exceed this sandbox's hard limits, and
  # raising a hard limit needs CAP_SYS_RESOURCE; keep them at or below the current ones.
  # --network host: the probes come from the host's loopback (no CNI plugins needed).
  local out
  if ! out=$("${P[@]}" run -d --name scim-sidecar-ci \
      --read-only --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges \
      --network host \
      --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
      localhost/scim-sidecar:ci "${args[@]}" 2>&1); then
    why="podman run failed: $out"; return 1
  fi
  mode=podman
  pid=$("${P[@]}" inspect -f '{{.State.Pid}}' scim-sidecar-ci)
  echo "image: running under podman (runc), container pid $pid"
}

start_fallback() {
  # The image's own layer, unpacked from the OCI archive (not build.sh's rootfs/), so this
  # runs what was committed.
  unpack=$(mktemp -d)
  mkdir -p "$unpack/oci" "$unpack/rootfs"
  tar -xf "$archive" -C "$unpack/oci"
  local manifest layer
  manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"].split(":")[1])' "$unpack/oci/index.json")
  layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"].split(":")[1])' "$unpack/oci/blobs/sha256/$manifest")
  tar -xzf "$unpack/oci/blobs/sha256/$layer" -C "$unpack/rootfs"
  # A private mount namespace; the rootfs bind-mounted onto itself read-only. Then, in one
  # process: chroot(2) (needs CAP_SYS_CHROOT, so it comes first), drop the groups, gid and
  # uid to 65532 (the kernel clears every capability when the last uid leaves 0), set
  # no_new_privs, and exec the image's entrypoint inside the new root. setpriv(1) cannot
  # do this here: it would have to run inside the image, which has no setpriv (no shell,
  # no tools), and a setpriv run before chroot leaves no capability to chroot with.
  unshare --mount --fork --kill-child -- sh -ec '
    r=$1; shift
    mount --make-rprivate /
    mount --bind "$r" "$r"
    mount -o remount,bind,ro "$r"
    exec python3 -c "
import ctypes, os, sys
root = sys.argv[1]
os.chroot(root); os.chdir(\"/home/nonroot\")
os.setgroups([]); os.setgid(65532); os.setuid(65532)
PR_SET_NO_NEW_PRIVS = 38
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
os.execve(\"/usr/local/bin/scim-sidecar\", [\"scim-sidecar\"] + sys.argv[2:], {\"PATH\": \"/usr/local/bin\"})
" "$r" "$@"
  ' sh "$unpack/rootfs" "${args[@]}" &
  pid=$!
  mode=chroot
}

if [ -n "${IMAGE_FORCE_FALLBACK:-}" ]; then
  why="IMAGE_FORCE_FALLBACK is set"; started=""
elif start_podman; then started=1; else started=""; fi
if [ -z "$started" ]; then
  echo "image: podman cannot run the image here: $why"
  echo "image: falling back to unshare + read-only bind mount + chroot + setuid 65532"
  start_fallback
fi

echo "== image: probe /livez, /readyz, GET /scim/v2/Users?count=1 on $base"
ready=""
for _ in $(seq 1 150); do   # at most 30 s, polling every 0.2 s
  if [ "$mode" = chroot ] && ! kill -0 "$pid" 2>/dev/null; then
    echo "image: FAIL: the process exited" >&2; exit 1
  fi
  if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then ready=1; break; fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "image: FAIL: /readyz never answered 200 within 30 s" >&2;
  [ "$mode" != podman ] || podman --storage-driver vfs logs scim-sidecar-ci >&2; exit 1; }
curl -fsS "$base/livez" >/dev/null && echo "image: /livez 200"
echo "image: /readyz 200"
body=$(curl -fsS -H "Authorization: Bearer $token" "$base/scim/v2/Users?count=1")
python3 - "$body" <<'PY'
import json, sys
doc = json.loads(sys.argv[1])
assert doc["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], doc["schemas"]
assert doc["itemsPerPage"] == 1 and len(doc["Resources"]) == 1, doc
print(f"image: GET /scim/v2/Users?count=1 200 ListResponse, totalResults {doc['totalResults']}")
PY
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/scim/v2/Users?count=1")
[ "$code" = 401 ] || { echo "image: FAIL: no token gave $code, not 401" >&2; exit 1; }
echo "image: without the token 401"

echo "== image: the process is uid/gid 65532, no capabilities, root filesystem read-only"
# The server process: the container's init under podman; under the fallback, the child.
server=$pid
if [ "$mode" = chroot ]; then
  # unshare (pid) -> its forked child, which exec()ed sh -> python3 -> scim-sidecar.
  server=$(pgrep -P "$pid" | head -1)
fi
status=/proc/$server/status
grep -qE '^Uid:\s+65532\s+65532\s+65532\s+65532$' "$status" || { echo "image: FAIL: uid" >&2; grep Uid "$status" >&2; exit 1; }
grep -qE '^Gid:\s+65532\s+65532\s+65532\s+65532$' "$status" || { echo "image: FAIL: gid" >&2; exit 1; }
grep -qE '^CapEff:\s+0+$' "$status" || { echo "image: FAIL: capabilities" >&2; grep Cap "$status" >&2; exit 1; }
grep -qE '^NoNewPrivs:\s+1$' "$status" || { echo "image: FAIL: no_new_privs" >&2; exit 1; }
rootopts=$(awk '$5 == "/" {print $6}' "/proc/$server/mountinfo" | tail -1)
case ",$rootopts," in *,ro,*) ;; *) echo "image: FAIL: / is mounted '$rootopts', not ro" >&2; exit 1;; esac
echo "image: pid $server: uid 65532 gid 65532, CapEff 0, NoNewPrivs 1, / mounted $rootopts ($mode)"
# And a write into its root really fails with EROFS (tried as root, through its view).
python3 - "/proc/$server/root" <<'PY'
import errno, os, sys
path = os.path.join(sys.argv[1], "probe-write")
try:
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
except OSError as e:
    assert e.errno == errno.EROFS, e
    print(f"image: a write into the container's / fails: {os.strerror(e.errno)}")
else:
    os.unlink(path)
    sys.exit("image: FAIL: the root filesystem is writable")
PY

echo "== image: SIGTERM drains and exits 0"
if [ "$mode" = podman ]; then
  podman --storage-driver vfs --runtime runc stop -t 20 scim-sidecar-ci >/dev/null
  rc=$(podman --storage-driver vfs --runtime runc inspect -f '{{.State.ExitCode}}' scim-sidecar-ci)
else
  kill -TERM "$server"
  rc=0; wait "$pid" || rc=$?
  pid=""
fi
[ "$rc" = 0 ] || { echo "image: FAIL: exit code $rc after SIGTERM" >&2; exit 1; }
echo "image: exit code 0 after SIGTERM"

echo "== image: the default command (serve) with deploy/compose's config and secret files"
# As deploy/compose/compose.yaml runs it: sidecar.yaml mounted read-only at the --config
# path, the two secrets as files owned by 65532 with mode 0400 under /run/secrets. No Zulip
# here (upstream http://zulip:80 points at an unused loopback port), so the sidecar must
# start, answer /livez 200, and keep /readyz at 503.
if [ "$mode" = podman ]; then
  P=(podman --storage-driver vfs --runtime runc)
  sec=$(mktemp -d)
  unpack=$sec   # removed by cleanup
  printf '%s\n' "$token" > "$sec/scim_sidecar_bearer_token"
  printf '%s\n' SYNTHETICapikeyForCI0123456789ab > "$sec/scim_sidecar_zulip_api_key"
  chown 65532:65532 "$sec"/scim_sidecar_*; chmod 0400 "$sec"/scim_sidecar_*
  port2=$((port + 1))
  "${P[@]}" rm -f scim-sidecar-ci >/dev/null
  "${P[@]}" run -d --name scim-sidecar-ci \
    --read-only --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges \
    --network host --add-host zulip:127.0.0.1 \
    --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
    -e SCIM_SIDECAR_LISTEN="127.0.0.1:$port2" \
    -e SCIM_SIDECAR_REALMS__ROOT__UPSTREAM__URL="http://zulip:9" \
    -v "$PWD/deploy/compose/sidecar.yaml:/etc/scim-sidecar/sidecar.yaml:ro" \
    -v "$sec/scim_sidecar_bearer_token:/run/secrets/scim_sidecar_bearer_token:ro" \
    -v "$sec/scim_sidecar_zulip_api_key:/run/secrets/scim_sidecar_zulip_api_key:ro" \
    localhost/scim-sidecar:ci >/dev/null
  live=""
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port2/livez" 2>/dev/null; then live=1; break; fi
    [ "$("${P[@]}" inspect -f '{{.State.Running}}' scim-sidecar-ci)" = true ] || break
    sleep 0.2
  done
  [ -n "$live" ] || { "${P[@]}" logs scim-sidecar-ci >&2; echo "image: FAIL: serve never answered /livez" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port2/readyz")
  [ "$code" = 503 ] || { echo "image: FAIL: /readyz $code without a Zulip, not 503" >&2; exit 1; }
  echo "image: serve with the compose config: /livez 200, /readyz 503 (no Zulip here), secrets read as 65532"
  "${P[@]}" stop -t 20 scim-sidecar-ci >/dev/null
  rc=$("${P[@]}" inspect -f '{{.State.ExitCode}}' scim-sidecar-ci)
  [ "$rc" = 0 ] || { echo "image: FAIL: exit code $rc after SIGTERM" >&2; exit 1; }
else
  echo "image: skipped (needs a container runtime for the bind mounts): $why"
fi
echo "image: OK ($mode)"
