# shellcheck shell=bash
# qcow-lib.sh -- sourced by tests/qcow/test-qcow-*.sh after functions.sh.
# Fixture builders (qemu-img / qemu-io only) and the three oracle checks every
# layer goes through:
#   export  byte-identical to `qemu-img convert -O raw` of the same image
#   map     agrees with `qemu-img map --output=json` (tests/helpers/qcowtest.py
#           mapcmp: depth, present, data; zero where qemu's data is false)
#   info    agrees with `qemu-img info --backing-chain --output=json`
#           (qcowtest.py infocmp: sizes, compat, features, names, bitmaps)
requires qemu-img
requires qemu-io
requires python3
[ -x "$TOOL" ] || skip "$TOOL not built (make B=$B)"
QT=$top/tests/helpers/qcowtest.py

# mk IMG SIZE [qemu-img create options...]
mk () { local img=$1 size=$2; shift 2; qemu-img create -q -f qcow2 "$@" "$img" "$size"; }
# overlay NEW BACKING [options...]: NEW backed by BACKING (relative name)
overlay () {
  local new=$1 back=$2; shift 2
  qemu-img create -q -f qcow2 -b "$(basename "$back")" -F qcow2 "$@" "$new"
}
# io IMG 'qemu-io command' ...: each command runs in one qemu-io process
io () {
  local img=$1 c args=(); shift
  for c in "$@"; do args+=(-c "$c"); done
  qemu-io -f qcow2 "${args[@]}" "$img" >/dev/null
}

# check_image DESC IMG [qcow2pbs options...]
check_image () {
  local d=$1 img=$2 dir base; shift 2
  dir=$(dirname "$img") base=$(basename "$img")
  # QEMU resolves relative data-file names against its working directory,
  # so the oracle runs in the image's own directory.
  (cd "$dir" && qemu-img convert -O raw "$base" "$TMP/ref.raw")
  rm -f "$TMP/ours.raw" # export refuses an existing file
  if timeout 120 "$TOOL" export "$@" "$img" "$TMP/ours.raw" 2>"$TMP/err"; then
    same_bytes "$TMP/ref.raw" "$TMP/ours.raw" "$d: export = qemu-img convert"
  else
    fail "$d: export failed: $(cat "$TMP/err")"
  fi
  (cd "$dir" && qemu-img map --output=json "$base") >"$TMP/qemu.json"
  if timeout 60 "$TOOL" map --output-format json "$@" "$img" \
       >"$TMP/ours.json" 2>"$TMP/err"; then
    if python3 "$QT" mapcmp "$TMP/ours.json" "$TMP/qemu.json" >"$TMP/cmp"; then
      pass "$d: map = qemu-img map"
    else
      fail "$d: map differs: $(head -5 "$TMP/cmp")"
    fi
  else
    fail "$d: map failed: $(cat "$TMP/err")"
  fi
  (cd "$dir" && qemu-img info --backing-chain --output=json "$base") >"$TMP/qemu.json"
  if timeout 60 "$TOOL" info --output-format json "$@" "$img" \
       >"$TMP/ours.json" 2>"$TMP/err"; then
    if python3 "$QT" infocmp "$TMP/ours.json" "$TMP/qemu.json" >"$TMP/cmp"; then
      pass "$d: info = qemu-img info"
    else
      fail "$d: info differs: $(head -5 "$TMP/cmp")"
    fi
  else
    fail "$d: info failed: $(cat "$TMP/err")"
  fi
  rm -f "$TMP/ref.raw" "$TMP/ours.raw"
}

# check_chain DESC IMG...: check_image for every layer given
check_chain () {
  local d=$1 img; shift
  for img in "$@"; do check_image "$d: $(basename "$img")" "$img"; done
}

# expect_no_output DESC DIR: DIR holds no file at all (no output, no temp)
expect_no_output () {
  if [ -z "$(ls -A "$2")" ]; then pass "$1: no output file left"
  else fail "$1: left behind: $(ls -A "$2" | tr '\n' ' ')"; fi
}

# expect_bad DESC IMG [options...]: info, map and export all fail with one
# line naming a file, exit 1, within a timeout, and export leaves nothing.
expect_bad () {
  local d=$1 img=$2; shift 2
  mkdir -p "$TMP/out"
  expect_fail "$d: export" timeout 20 "$TOOL" export "$@" "$img" "$TMP/out/x.raw"
  expect_no_output "$d" "$TMP/out"
  rm -rf "$TMP/out"
}
# expect_bad_open DESC IMG [options...]: refused at open: info and map too
expect_bad_open () {
  local d=$1 img=$2; shift 2
  expect_bad "$d" "$img" "$@"
  expect_fail "$d: info" timeout 20 "$TOOL" info "$@" "$img"
  expect_fail "$d: map" timeout 20 "$TOOL" map "$@" "$img"
}
