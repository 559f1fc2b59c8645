#!/usr/bin/env bash
# dev.sh — the two commands of the README, and their pieces.
#   ./dev.sh run     install Debian packages, build, run the main job (smoke study + Pareto report)
#   ./dev.sh test    build and run every test: the normal build (with the CUDA backend compiled
#                    when nvcc is present) and an AddressSanitizer + UBSan build of the CPU code
# Pieces: ./dev.sh deps | build | sanitize
set -euo pipefail
cd "$(dirname "$0")"
JOBS=$(nproc 2>/dev/null || echo 2)

deps() {
  local pkgs="build-essential cmake pkg-config libyaml-dev libsqlite3-dev libopenblas-openmp-dev sqlite3 libxml2-utils python3"
  local missing=""
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "== installing:$missing"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
}

build() {
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
  cmake --build build -j"$JOBS"
}

sanitize() {
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DHLAB_SANITIZE=ON -DHLAB_CUDA=OFF
  cmake --build build-asan -j"$JOBS"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  HLAB_TEST_QUICK=1 ctest --test-dir build-asan --output-on-failure -j"$JOBS"
}

case "${1:-}" in
  deps) deps ;;
  build) build ;;
  run)
    deps; build
    ./build/hlab search experiments/smoke.yaml --db results.db
    ./build/hlab report --pareto --db results.db --out reports_out
    echo "== done: results.db, reports_out/ (open the .svg in a browser, the .csv in a spreadsheet)"
    ;;
  test)
    build
    ctest --test-dir build --output-on-failure -j"$JOBS"
    sanitize
    ;;
  sanitize) sanitize ;;
  *) sed -n '2,8p' "$0"; exit 2 ;;
esac
