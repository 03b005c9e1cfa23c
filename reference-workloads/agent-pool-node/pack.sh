#!/bin/sh
# Packs agent-pool into an npm tarball and prints what a package-install manifest pins: the tarball path, its
# exact version and its sha512 integrity (Subresource Integrity form, "sha512-" + base64 of the raw digest).
# Usage: pack.sh [destination-dir]   (default: current directory). Nothing is written inside the package.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=$(cd "${1:-.}" && pwd)
# npm pack stamps every entry with a fixed mtime, so the same files and npm version give the same tarball.
name=$(cd "$here" && npm pack --silent --pack-destination "$dest")
tarball="$dest/$name"
integrity="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 | tr -d '\n')"
version=$(node -p 'require(process.argv[1]).version' "$here/package.json")
printf 'tarball: %s\nversion: %s\nintegrity: %s\n' "$tarball" "$version" "$integrity"
