#!/usr/bin/env bash
# The shell way of making disc images, for bench/iso.sh: iso-images.sh TOOL DISCS OUT FILE...
# writes, for every line `LABEL IMAGE SIZE VOLUME...` of DISCS, OUT/IMAGE holding FILE...
# (what every disc carries) and the disc's volumes (paths relative to the bundle
# directory $BUNDLE): TOOL xorriso or genisoimage (Joliet, Rock Ridge), or cat (the floor:
# the same bytes into one file).
set -euo pipefail
tool=$1 discs=$2 out=$3
shift 3
shared=("$@")
rm -rf "$out"
mkdir -p "$out"
while read -r label image _size volumes; do
    read -r -a files <<<"$volumes"
    files=("${files[@]/#/$BUNDLE/}")
    case $tool in
        xorriso) xorriso -as mkisofs -quiet -V "$label" -J -joliet-long -R -o "$out/$image" "${shared[@]}" "${files[@]}" ;;
        genisoimage) genisoimage -quiet -V "$label" -J -joliet-long -R -o "$out/$image" "${shared[@]}" "${files[@]}" ;;
        cat) cat "${shared[@]}" "${files[@]}" >"$out/$image" ;;
        *) echo "iso-images.sh: unknown tool $tool" >&2; exit 2 ;;
    esac
done <"$discs"
