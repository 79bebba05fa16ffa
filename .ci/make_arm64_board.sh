#!/usr/bin/env bash
# Build (once, cached) the emulated 64-bit Raspberry Pi board root:
# an arm64 Debian bookworm root made of Debian's own packages, with aarch64
# wheels of numpy and ai-edge-litert, run under qemu-aarch64-static.
#
# Usage: .ci/make_arm64_board.sh [ROOT]      prints ROOT on success.
# EDGETQS_ARM64_RUNTIME (default ai-edge-litert==2.3.0) and EDGETQS_ARM64_NUMPY
# choose the board's runtime; e.g. tflite-runtime==2.14.0 with numpy 1.26.4
# makes a board whose runtime computes some quantized ops wrongly (see the
# capability matrix), which validation must catch.
# ROOT defaults to $EDGETQS_CACHE/arm64-root-<key> (~/.cache/edgetqs/...), the key
# naming the pinned versions, so CI builds it once per version set.
# The host's apt configuration is not touched: a private apt state under the
# cache directory resolves and downloads the arm64 packages.
set -euo pipefail

RUNTIME_SPEC="${EDGETQS_ARM64_RUNTIME:-ai-edge-litert==2.3.0}"
NUMPY_VERSION="${EDGETQS_ARM64_NUMPY:-2.1.3}"
RUNTIME_MODULE="${RUNTIME_SPEC%%==*}"
RUNTIME_MODULE="${RUNTIME_MODULE//-/_}"
PYTHON_PKG=python3.11
KEY="bookworm-py311-numpy${NUMPY_VERSION}-${RUNTIME_SPEC//==/}-v3"  # v3: byte-compiled
CACHE="${EDGETQS_CACHE:-$HOME/.cache/edgetqs}"
ROOT="${1:-$CACHE/arm64-root-$KEY}"

log() { echo "[make_arm64_board] $*" >&2; }

mkdir -p "$CACHE"
# One build at a time per cache: a second caller waits, then finds the root ready.
exec 9>"$CACHE/arm64-build.lock"
flock 9

if [ -f "$ROOT/.edgetqs-board-ready" ]; then
  echo "$ROOT"
  exit 0
fi

if ! command -v qemu-aarch64-static >/dev/null; then
  log "installing qemu-user-static"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq qemu-user-static >&2
fi

WORK="$(mktemp -d "$CACHE/arm64-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
APT="$WORK/apt"
mkdir -p "$APT/etc/apt/sources.list.d" "$APT/etc/apt/preferences.d" "$APT/etc/apt/apt.conf.d" \
         "$APT/var/lib/apt/lists/partial" "$APT/var/cache/apt/archives/partial" "$APT/var/lib/dpkg"
touch "$APT/var/lib/dpkg/status"
cat > "$APT/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Architectures: arm64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Architectures: arm64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_arm64() {
  apt-get -q -o Dir="$APT" -o Dir::State::status="$APT/var/lib/dpkg/status" \
    -o Dir::Etc::trusted=/etc/apt/trusted.gpg -o Dir::Etc::trustedparts=/etc/apt/trusted.gpg.d \
    -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
    -o Debug::NoLocking=1 -o APT::Install-Recommends=false "$@"
}
describe_pi4_cpus() {  # ROOT: a 4-core Cortex-A72 (BCM2711) as a Pi 4 kernel shows it
  local root="$1" cpu cpus=4 sysfs="$1/sys/devices/system/cpu"
  mkdir -p "$root/proc/device-tree" "$sysfs"
  : > "$root/proc/cpuinfo"
  for ((cpu = 0; cpu < cpus; cpu++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$cpu" >> "$root/proc/cpuinfo"
    mkdir -p "$sysfs/cpu$cpu/topology" "$sysfs/cpu$cpu/cpufreq"
    echo 0 > "$sysfs/cpu$cpu/topology/physical_package_id"
    echo "0-$((cpus - 1))" > "$sysfs/cpu$cpu/topology/cluster_cpus_list"
    echo "0-$((cpus - 1))" > "$sysfs/cpu$cpu/topology/core_siblings_list"
    echo "$cpu" > "$sysfs/cpu$cpu/topology/thread_siblings_list"
    echo 1500000 > "$sysfs/cpu$cpu/cpufreq/cpuinfo_max_freq"
    echo 600000 > "$sysfs/cpu$cpu/cpufreq/cpuinfo_min_freq"
  done
  printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1 (emulated)\n' >> "$root/proc/cpuinfo"
  echo "$((cpus - 1))" > "$sysfs/kernel_max"
  for list in possible present online; do echo "0-$((cpus - 1))" > "$sysfs/$list"; done
  printf 'Raspberry Pi 4 Model B Rev 1.1 (emulated: qemu-aarch64 -cpu cortex-a72)\0' > "$root/proc/device-tree/model"
}

log "resolving arm64 packages"
apt_arm64 update >&2
# python3.11 and what it depends on; libstdc++6/libgcc-s1 for the LiteRT wheel.
apt_arm64 install -y --download-only "$PYTHON_PKG" libstdc++6 libgcc-s1 >&2

STAGE="$WORK/root"
mkdir -p "$STAGE"
for deb in "$APT"/var/cache/apt/archives/*.deb; do
  dpkg-deb -x "$deb" "$STAGE"
done

log "downloading aarch64 wheels"
PIP="${EDGETQS_PIP:-$(dirname "$0")/../.venv/bin/pip}"
[ -x "$PIP" ] || PIP=pip3
# Every manylinux tag bookworm's glibc (2.36) can run: LiteRT 2.x ships manylinux_2_27.
PLATFORMS=(--platform manylinux2014_aarch64)
for minor in 17 24 27 28 31 34 35 36; do PLATFORMS+=(--platform "manylinux_2_${minor}_aarch64"); done
"$PIP" download -q --only-binary=:all: --no-deps "${PLATFORMS[@]}" --python-version 3.11 --implementation cp \
  -d "$WORK/wheels" "numpy==$NUMPY_VERSION" "$RUNTIME_SPEC" >&2
SITE="$STAGE/usr/lib/python3/dist-packages"
mkdir -p "$SITE"
for whl in "$WORK"/wheels/*.whl; do
  python3 -m zipfile -e "$whl" "$SITE"
done

# qemu-user passes /proc and /sys through from the x86 host, where LiteRT's
# cpuinfo finds no ARM cores and crashes (NULL deref in the interpreter's
# constructor). qemu -L looks a path up inside ROOT first, so a Raspberry Pi 4's
# CPU description placed there is what the runtime sees.
describe_pi4_cpus "$STAGE"
mkdir -p "$(dirname "$ROOT")"
rm -rf "$ROOT"
mv "$STAGE" "$ROOT"
SITE_IN_ROOT="$ROOT/usr/lib/python3/dist-packages"
log "checking the board's python under qemu"
qemu-aarch64-static -cpu cortex-a72 -L "$ROOT" "$ROOT/usr/bin/$PYTHON_PKG" -c \
  "import numpy; import $RUNTIME_MODULE; print('numpy', numpy.__version__)" >&2
# Byte-compiled by the board's own python, as Pi OS's packages are when installed (py3compile,
# pip): with no .pyc, a board's first runs wrote them, and under the emulated board's RAM limit the
# written pages were charged to the run (~10 MiB more on the first run than on the next).
log "byte-compiling the board's python packages"
qemu-aarch64-static -cpu cortex-a72 -L "$ROOT" "$ROOT/usr/bin/$PYTHON_PKG" -m compileall -q -j 0 -s "$ROOT" -p / \
  -x '/(test|tests|idlelib|lib2to3|tkinter|turtledemo)/' "$ROOT/usr/lib/$PYTHON_PKG" "$SITE_IN_ROOT" >&2
# Marked ready only once its python runs: a root that failed the check is rebuilt next time.
echo "$KEY" > "$ROOT/.edgetqs-board-ready"
echo "$ROOT"
