#!/bin/bash
# test-qcow-datafile.sh -- external data files: a relative name resolves in
# the image's own directory (QEMU uses its working directory: the oracle
# runs there); an absolute name is refused unless
# --allow-absolute-data-file; data_file_raw images.
. "$(dirname "$0")/../helpers/functions.sh"
. "$(dirname "$0")/../helpers/qcow-lib.sh"

d=$TMP/df
mkdir "$d"
(cd "$d" && mk base.qcow2 4M -o data_file=base.data &&
  io base.qcow2 'write -P 0x11 0 1M' 'write -z 2M 64k' 'write -P 0x12 3M 4k')
overlay "$d/top.qcow2" "$d/base.qcow2"
(cd "$d" && io top.qcow2 'write -P 0x21 512k 64k' 'write -z -u 64k 64k')
check_chain "relative data file" "$d/base.qcow2" "$d/top.qcow2"

# Run from another directory: the data file is still found next to the
# image (qcow2pbs), whatever the working directory.
mkdir "$TMP/elsewhere"
(cd "$d" && qemu-img convert -O raw top.qcow2 "$TMP/ref.raw")
(cd "$TMP/elsewhere" && "$TOOL" export ../df/top.qcow2 out.raw)
same_bytes "$TMP/ref.raw" "$TMP/elsewhere/out.raw" "data file found from another cwd"
rm -f "$TMP/ref.raw" "$TMP/elsewhere/out.raw"

# An overlay whose data file is also external, with data_file_raw=on.
(cd "$d" && mk raw.qcow2 2M -o data_file=raw.data,data_file_raw=on &&
  io raw.qcow2 'write -P 0x31 0 512k' 'write -z 1M 64k')
check_image "data_file_raw" "$d/raw.qcow2"

# Absolute data-file name: refused by default, followed on request.
a=$TMP/abs
mkdir "$a"
mk "$a/abs.qcow2" 2M -o data_file="$a/abs.data"
io "$a/abs.qcow2" 'write -P 0x41 0 64k'
expect_bad_open "absolute data-file name" "$a/abs.qcow2"
if grep -q "abs.qcow2" "$TMP/ef.err"; then pass "error names the image"
else fail "error does not name the image: $(cat "$TMP/ef.err")"; fi
check_image "absolute data file allowed" "$a/abs.qcow2" --allow-absolute-data-file

# Missing data file.
rm "$d/base.data"
expect_bad_open "missing data file" "$d/base.qcow2"

done_testing
