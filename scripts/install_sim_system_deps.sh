#!/usr/bin/env bash
# The closed-loop benchmark (benchmarks/sim) renders MuJoCo on the CPU through OSMesa.
# Installs Debian's libosmesa6 when it is missing (needs root or passwordless sudo).
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libOSMesa\.so'; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
if ! command -v apt-get >/dev/null; then
  echo "error: libOSMesa not found and no apt-get here; install your distribution's OSMesa package (Mesa off-screen rendering)" >&2
  exit 1
fi
echo "sim: installing libosmesa6 (OSMesa, software OpenGL for MuJoCo rendering)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libosmesa6 >/dev/null
