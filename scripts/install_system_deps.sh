#!/usr/bin/env bash
# Optional system libraries, installed from Debian/Ubuntu packages when missing and we may (root or
# passwordless sudo); otherwise says what to install and the tests that need them skip (or, with
# KUAVO_REQUIRE_SYSTEM_DEPS=1 as in CI, fail):
#   FFmpeg shared libraries (package ffmpeg): torchcodec, the ~3x faster mp4 decoder (data.video_backend=auto)
#   OSMesa (package libosmesa6): CPU rendering of MuJoCo for the closed-loop benchmark (benchmarks/sim)
set -eu
has_lib() {
  python3 -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('$1') is None)" 2>/dev/null
}
missing=()
has_lib avcodec || missing+=(ffmpeg)
has_lib OSMesa || dpkg-query -W -f='${Status}' libosmesa6 2>/dev/null | grep -q 'ok installed' || missing+=(libosmesa6)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "warning: missing system packages ${missing[*]} and no root to install them; the tests needing them will skip" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "warning: missing ${missing[*]} and there is no apt-get; install FFmpeg's shared libraries / Mesa's OSMesa by hand" >&2
  exit 0
fi
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
