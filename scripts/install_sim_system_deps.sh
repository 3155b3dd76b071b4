#!/usr/bin/env bash
# The closed-loop benchmark (benchmarks/sim) renders MuJoCo on the CPU through OSMesa.
# Installs Debian's libosmesa6 when it is missing and we may (root or passwordless sudo); otherwise
# says what to install and leaves it to the sim tests to skip (or, with KUAVO_REQUIRE_SIM=1, fail).
set -eu
has_osmesa() {
  python3 -c 'import ctypes.util, sys; sys.exit(ctypes.util.find_library("OSMesa") is None)' 2>/dev/null \
    || dpkg-query -W -f='${Status}' libosmesa6 2>/dev/null | grep -q 'ok installed'
}
has_osmesa && exit 0
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "warning: OSMesa (Debian: libosmesa6) is missing and cannot be installed without root; the sim tests will skip" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "warning: OSMesa is missing and there is no apt-get; install your distribution's Mesa off-screen package" >&2
  exit 0
fi
echo "sim: installing libosmesa6 (OSMesa, software OpenGL for MuJoCo rendering)"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 >/dev/null
