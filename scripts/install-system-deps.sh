#!/usr/bin/env bash
# Installs the Debian packages pipevault's build and tests need, when they are missing.
# Idempotent and quiet when everything is present. Needs root (CI runs as root).
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
# Headers and libraries of xxHash, zstd and lz4: setup.py compiles pipevault.format._accel
# against them.
[ -e /usr/include/xxhash.h ] || need+=(libxxhash-dev)
[ -e /usr/include/zstd.h ] || need+=(libzstd-dev)
[ -e /usr/include/lz4.h ] || need+=(liblz4-dev)

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "pipevault: missing system packages: ${need[*]} (install them as root with apt-get)" >&2
    exit 0
fi
echo "pipevault: installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
