#!/bin/bash
# Installs what building and testing cr needs on Debian 12. Run as root; safe to run again.
set -euo pipefail

if [[ $EUID -ne 0 ]]; then
    echo "setup.sh: run as root (sudo scripts/setup.sh)" >&2
    exit 1
fi

packages=(
    # build
    build-essential cmake ninja-build pkg-config git
    flatbuffers-compiler libflatbuffers-dev
    libboost-dev libboost-program-options-dev
    libnl-3-dev libnl-route-3-dev libnl-genl-3-dev
    libcap-dev
    # tests and benchmarks
    libgtest-dev libgmock-dev libbenchmark-dev
    # integration tests and the demo: ps/pgrep, setsid, timeout/sha256sum/od/dd, find/xargs
    procps util-linux coreutils findutils
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${packages[@]}" >/dev/null
echo "setup.sh: build and test dependencies present (${#packages[@]} packages)"
