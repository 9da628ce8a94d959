#!/usr/bin/env bash
# Build the scim-sidecar OCI image WITHOUT a registry or a Docker engine.
#
# deploy/Dockerfile is the canonical build for Docker/BuildKit users, but it starts FROM
# rust:…-slim-bookworm and gcr.io/distroless/cc-debian12, which need a registry. This script
# makes the equivalent image from the host instead (the host is Debian bookworm, the same
# glibc as distroless/cc-debian12):
#
#   1. cargo build --release --locked -p scim-sidecar --bin scim-sidecar, then strip it;
#   2. a rootfs with exactly what the binary needs: the binary, the shared libraries `ldd`
#      names (libc, libm, libgcc_s, the dynamic loader), the CA bundle, and /etc/passwd,
#      /etc/group with `nonroot` (65532) as in distroless; no shell, no package manager;
#   3. `buildah from scratch` + `buildah copy` + `buildah config` + `buildah commit`
#      (vfs storage, chroot isolation: no daemon, no registry) into an OCI archive.
#
# Not static: the only Rust target installed is x86_64-unknown-linux-gnu (no musl std can
# be fetched here), and a glibc `crt-static` binary still dlopen()s glibc's NSS modules
# for getaddrinfo (DNS), so it would not be self-contained either.
#
# Usage: deploy/image/build.sh [TAG]        (default tag scim-sidecar:<Cargo version>)
# Output (under $CARGO_TARGET_DIR, default target/):
#   image/scim-sidecar.oci.tar   OCI image archive: `podman load -i`, `skopeo copy
#                                oci-archive:… docker://registry/…`, `docker load` (>= 25)
#   image/rootfs/                the same files, unpacked (for inspection)
# Env: SCIM_SIDECAR_BINARY=path  use an already built binary instead of building.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
out=$target/image
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
tag=${1:-scim-sidecar:$version}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need buildah || [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    echo "image: installing buildah and ca-certificates (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      buildah ca-certificates >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends buildah ca-certificates >/dev/null; }
  else
    echo "image: buildah and ca-certificates are required (apt-get install buildah ca-certificates)" >&2
    exit 1
  fi
fi

# 1. The binary.
if [ -n "${SCIM_SIDECAR_BINARY:-}" ]; then
  bin=$SCIM_SIDECAR_BINARY
else
  cargo build --release --locked -p scim-sidecar --bin scim-sidecar
  bin=$target/release/scim-sidecar
fi

# 2. The rootfs.
rootfs=$out/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/etc/scim-sidecar" \
  "$rootfs/home/nonroot" "$rootfs/tmp"
strip --strip-all -o "$rootfs/usr/local/bin/scim-sidecar" "$bin"
chmod 0755 "$rootfs/usr/local/bin/scim-sidecar"
# Every library the dynamic loader resolves, and the loader itself, at the path the binary
# asks for (the real file, not the usrmerge symlinks).
libs=$(ldd "$rootfs/usr/local/bin/scim-sidecar" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
[ -n "$libs" ] || { echo "image: ldd found no libraries (a static binary?)" >&2; exit 1; }
for lib in $libs; do
  install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done
# Debian's CA bundle: the sidecar trusts its bundled Mozilla roots AND the system store.
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > "$rootfs/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' > "$rootfs/etc/group"
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' > "$rootfs/etc/nsswitch.conf"
chown 65532:65532 "$rootfs/home/nonroot"
chmod 1777 "$rootfs/tmp"
# Reproducible timestamps: the commit's time.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
find "$rootfs" -exec touch -h -d "@$epoch" {} +

# 3. The OCI image (buildah: no daemon, vfs storage, chroot isolation, FROM scratch).
export BUILDAH_ISOLATION=chroot STORAGE_DRIVER=vfs
b() { buildah --storage-driver vfs "$@"; }
ctr=$(b from --name "scim-sidecar-build-$$" scratch)
trap 'b rm "$ctr" >/dev/null 2>&1 || true' EXIT
b copy "$ctr" "$rootfs/" / >/dev/null
b config \
  --user 65532:65532 \
  --workingdir /home/nonroot \
  --port 8080/tcp \
  --entrypoint '["/usr/local/bin/scim-sidecar"]' \
  --cmd '["serve","--config","/etc/scim-sidecar/sidecar.yaml"]' \
  --env PATH=/usr/local/bin \
  --created-by "deploy/image/build.sh (rootfs from the host build, FROM scratch)" \
  --label org.opencontainers.image.title=scim-sidecar \
  --label "org.opencontainers.image.description=SCIM 2.0 provisioning for Zulip (Okta, Entra ID) over Zulip's REST API" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  "$ctr"
rm -f "$out/scim-sidecar.oci.tar"
b commit --quiet --format oci --disable-compression=false --timestamp "$epoch" "$ctr" "oci-archive:$out/scim-sidecar.oci.tar:$tag" >/dev/null

size_rootfs=$(du -sb "$rootfs" | cut -f1)
size_archive=$(stat -c %s "$out/scim-sidecar.oci.tar")
echo "image: $tag -> $out/scim-sidecar.oci.tar"
echo "image: rootfs $((size_rootfs / 1024)) KiB unpacked; archive $((size_archive / 1024)) KiB; files:"
(cd "$rootfs" && find . -type f -printf '  %p %s\n' | sort)
