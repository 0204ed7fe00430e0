#!/bin/sh
# Unpack the Debian package whose photographs the demo model trains on (see docs/demo-model.md § Data).
# Only the files listed in make_photo_crops.py's DEBIAN_PHOTOS are used: CC0 or CC-BY-4.0 per the package's
# copyright file; the package's CC-BY-SA and GPL images are left out.
#   sh packaging/demo/fetch_debian_photos.sh /tmp/debian-photos
set -eu
out=${1:?usage: fetch_debian_photos.sh OUT}
mkdir -p "$out"
cd "$out"
apt-get download lomiri-wallpapers-16.04
dpkg-deb -x lomiri-wallpapers-16.04_*.deb .
ls usr/share/backgrounds usr/share/doc/lomiri-wallpapers-16.04/copyright
