#!/usr/bin/env bash
# Builds the `baton:local` image without any container registry: the root filesystem is
# assembled here (Baton's binaries, the shared libraries `ldd` says they need, and a static
# busybox as /bin/sh for jobs), then `docker build` copies it onto `FROM scratch`.
#
#   deploy/build-images.sh            # release binaries (cargo build --release)
#   deploy/build-images.sh --debug    # reuse/make debug binaries (what CI and the tests use)
#   deploy/build-images.sh --pgo      # coordinator and worker from bench/pgo.sh (target/pgo/bin)
#
# Needs: cargo, docker, and busybox-static (`apt-get install busybox-static`; installed here
# when missing and apt-get is available). With a registry, `docker build -f
# deploy/Dockerfile.registry -t baton:local .` gives the same image from official bases.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
image="${BATON_IMAGE:-baton:local}"
for arg in "$@"; do
  case "$arg" in
    --debug) profile=debug ;;
    --release) profile=release ;;
    --pgo) profile=pgo ;;
    *) echo "usage: $0 [--debug|--release|--pgo]" >&2; exit 2 ;;
  esac
done

if [ ! -x /bin/busybox ] || ! /bin/busybox --list >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null; }
  fi
fi
# A static busybox is "not a dynamic executable" to ldd.
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
  echo "a static busybox is needed at /bin/busybox (apt-get install busybox-static)" >&2
  exit 1
fi

bins=(baton-coordinator baton-worker baton)
# Where the binaries come from: the coordinator and worker, and the CLI.
server_dir=target/$profile
cli_dir=target/$profile
case "$profile" in
  release) cargo build --release --quiet --bin baton-coordinator --bin baton-worker --bin baton ;;
  debug) cargo build --quiet --bin baton-coordinator --bin baton-worker --bin baton ;;
  pgo)
    for b in baton-coordinator baton-worker; do
      if [ ! -x "target/pgo/bin/$b" ]; then
        echo "target/pgo/bin/$b is missing: build it first with bench/pgo.sh" >&2
        exit 1
      fi
    done
    cargo build --release --quiet --bin baton
    server_dir=target/pgo/bin
    cli_dir=target/release
    ;;
esac

context=target/docker-context
rm -rf "$context"
root="$context/rootfs"
mkdir -p "$root"/{bin,usr/local/bin,etc,tmp,var/lib/baton,var/lib/baton-worker,work,proc,sys,dev}
chmod 1777 "$root/tmp"
for b in "${bins[@]}"; do
  if [ "$b" = baton ]; then from=$cli_dir/$b; else from=$server_dir/$b; fi
  cp "$from" "$root/usr/local/bin/$b"
  # Each library at the path the binary's loader looks for it.
  ldd "$from" | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/work:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
cp deploy/Dockerfile "$context/Dockerfile"

log="$context/docker-build.log"
docker build --quiet -t "$image" "$context" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
echo "built $image from $profile binaries ($(du -sh "$root" | cut -f1) root filesystem)"
