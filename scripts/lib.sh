# Shared by scripts/run and scripts/test: Debian packages and the build.
# shellcheck shell=bash

VB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VB_BUILD=${VB_BUILD:-$VB_ROOT/build}

# Everything the server and its tests need, from Debian 12's archive.
VB_BUILD_PACKAGES=(
  meson ninja-build pkg-config g++ python3
  libglib2.0-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  libgstreamer-plugins-bad1.0-dev libsoup-3.0-dev libjson-glib-dev libnice-dev
  libpq-dev libopus-dev libssl-dev libsrtp2-dev
)
VB_RUNTIME_PACKAGES=(
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-nice postgresql iproute2
  python3-aiortc python3-aiohttp python3-numpy
)
VB_TEST_PACKAGES=(
  libgtest-dev libgmock-dev prometheus python3-yaml
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0
)

# Installs whichever of the given packages are missing; a no-op (one dpkg-query)
# when all are present.
vb_ensure_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "Installing Debian packages: ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

vb_build() {
  if [ ! -f "$VB_BUILD/build.ninja" ]; then
    meson setup "$VB_BUILD" "$VB_ROOT" "$@"
  fi
  meson compile -C "$VB_BUILD"
}
