#!/usr/bin/env bash
# build-test-image.sh: builds the kernel + busybox initramfs that Tier-2 microVM jobs boot (and that
# test/microvm-*.test.ts boots). Owns the guest side of the job protocol: the /init script below.
#
# Usage: scripts/build-test-image.sh [--cache DIR]
#   DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/agentvm/images (outside the clone).
# Needs: apt (package lists up to date), busybox-static installed, gzip; xz/zstd only if the kernel
# package ships compressed modules.
# Prints `cached` or `built`, then KEY=VALUE lines (AGENTVM_KERNEL, AGENTVM_KERNEL_SHA256, AGENTVM_INITRD,
# AGENTVM_INITRD_SHA256, AGENTVM_KERNEL_PACKAGE, AGENTVM_KERNEL_VERSION) that callers parse.
#
# Invariants:
# - The kernel is the exact image package linux-image-cloud-amd64 depends on, at its apt candidate
#   version; never a glob (globs fetch every version).
# - An image directory is complete or absent: it is assembled in a temporary directory inside the cache
#   and renamed into place, so an interrupted or concurrent build never leaves a half image behind.
# - The cache key covers everything that changes the bytes: kernel package + version, busybox version,
#   and the digest of this script (guest init, module list, build steps).
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/agentvm/images"
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) cache="${2:?--cache needs a directory}"; shift 2 ;;
    --cache=*) cache="${1#--cache=}"; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-test-image: unknown argument: $1" >&2; exit 64 ;;
  esac
done

die() { echo "build-test-image: $*" >&2; exit 1; }

# Virtio modules, in load order (each depends only on the ones before it).
modules=(virtio_ring virtio virtio_mmio failover net_failover virtio_net)

# ---------------------------------------------------------------------------------------------------
# Guest /init: the job protocol (host side: src/providers/microvm/protocol.ts). Keep the two in step.
#
# Kernel command line: agentvm.nonce=<32 hex>            (required; tags every protocol record)
#                      agentvm.job=<base64 sh script>    (optional; used when the overlay has no /job/run)
#                      agentvm.net=1                     (load the virtio modules before the job)
#                      agentvm.probe=1                   (print AGENTVM-PROBE-OK and power off at once)
# Job overlay (a second newc cpio appended to the initramfs): /job/run (sh script), /job/in/* (inputs).
# The job runs as `sh /job/run` in /job/in, stdin /dev/null, stdout+stderr on the console, with
# AGENTVM_IN=/job/in and AGENTVM_OUT=/job/out; regular files left under /job/out are the results.
# Console records, one per line, each `AGENTVM-<TAG> <nonce>[ <fields>]`:
#   READY                                   init is about to start the job (end of boot)
#   ERROR <text>                            init could not do something (job still reported)
#   FILE <base64 name> <size> <sha256>      then the file as base64 lines (76 columns), then
#   FILE-END                                end of that file's payload
#   EXIT <code>                             the job's exit status; always the last record
#   PROBE-OK                                answer to agentvm.probe=1
# Before the first record after the job, init prints a newline so a job whose output lacks a trailing
# newline cannot glue text onto a record; the host also finds records anywhere within a line.
# ---------------------------------------------------------------------------------------------------
read -r -d '' init_script <<'INIT' || true
#!/bin/sh
export PATH=/bin
mount -t devtmpfs dev /dev 2>/dev/null
exec </dev/null >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
# Kernel messages below "alert" stay off the console: they would interleave with protocol records.
echo 1 >/proc/sys/kernel/printk

halt_now() { sync; poweroff -f; reboot -f; }
# After the last record: the host stops the VM as soon as it has read EXIT. poweroff -f does not wait for the
# serial port to drain, so powering off at once could cut the record off; this is only the fallback.
exit_then_halt() { record EXIT "$1"; sleep 3; halt_now; }

nonce=
job_b64=
net=
probe=
for word in $(cat /proc/cmdline); do
  case "$word" in
    agentvm.nonce=*) nonce="${word#agentvm.nonce=}" ;;
    agentvm.job=*) job_b64="${word#agentvm.job=}" ;;
    agentvm.net=1) net=1 ;;
    agentvm.probe=1) probe=1 ;;
  esac
done
[ -n "$nonce" ] || nonce=0
record() { echo "AGENTVM-$1 $nonce${2:+ $2}"; }

if [ -n "$probe" ]; then record PROBE-OK; halt_now; fi

if [ -n "$net" ]; then
  for m in $(cat /lib/agentvm/modules); do
    insmod "/lib/modules/$m.ko" || record ERROR "insmod $m failed"
  done
fi

mkdir -p /job/in /job/out /tmp
if [ ! -f /job/run ]; then
  if [ -n "$job_b64" ]; then
    echo "$job_b64" | base64 -d >/job/run || record ERROR "agentvm.job is not base64"
  else
    record ERROR "no job: neither /job/run in the overlay nor agentvm.job on the command line"
    exit_then_halt 125
  fi
fi

record READY
cd /job/in
AGENTVM_IN=/job/in AGENTVM_OUT=/job/out HOME=/tmp sh /job/run
code=$?
# Whatever the job left running must not write into the result block.
kill -9 -1 2>/dev/null
echo
cd /job/out
AGENTVM_NONCE="$nonce" find . -type f -exec sh /lib/agentvm/emit-file {} \;
exit_then_halt "$code"
INIT

read -r -d '' emit_file_script <<'EMIT' || true
#!/bin/sh
# Emits one result file as a FILE record, base64 payload, FILE-END (see /init).
f="$1"
name=$(printf '%s' "${f#./}" | base64 -w 0)
size=$(stat -c %s "$f")
sum=$(sha256sum "$f" | cut -d ' ' -f 1)
echo "AGENTVM-FILE $AGENTVM_NONCE $name $size $sum"
base64 -w 76 "$f"
echo "AGENTVM-FILE-END $AGENTVM_NONCE"
EMIT

# --- versions and cache key --------------------------------------------------------------------------
command -v apt-cache >/dev/null || die "apt-cache not found (this script needs Debian's apt)"
# apt-cache parses every package list on each call (≈0.5 s here: Debian images disable pkgcache.bin), so
# the resolved package + version is remembered per state of the lists; `apt-get update` changes the stamp.
mkdir -p "$cache"
lists_stamp=$(stat -c '%n %Y %s' /var/lib/apt/lists/*_Packages* 2>/dev/null | sha256sum | cut -c1-16)
resolved="$cache/.resolved-$lists_stamp"
if [ -f "$resolved" ]; then
  read -r kpkg kver <"$resolved"
else
  kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
  [ -n "$kpkg" ] || die "apt-cache depends linux-image-cloud-amd64 names no image package; run apt-get update"
  kver=$(apt-cache policy "$kpkg" | awk '$1 == "Candidate:" { print $2; exit }')
  { [ -n "$kver" ] && [ "$kver" != "(none)" ]; } || die "no installable version of $kpkg; run apt-get update"
  rm -f "$cache"/.resolved-*
  printf '%s %s\n' "$kpkg" "$kver" >"$resolved.$$" && mv "$resolved.$$" "$resolved"
fi

busybox=/bin/busybox
bbver=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || true)
[ -n "$bbver" ] && [ -x "$busybox" ] || die "busybox-static is not installed: apt-get install busybox-static"

# This script's own digest stands for the guest init, the module list and the build steps.
script_digest=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
key="${kpkg}_${kver}_busybox-${bbver}_build-${script_digest}"
key="${key//[^A-Za-z0-9._+-]/-}"
image_dir="$cache/$key"

print_image() {
  echo "AGENTVM_KERNEL=$image_dir/vmlinuz"
  echo "AGENTVM_KERNEL_SHA256=$(cat "$image_dir/vmlinuz.sha256")"
  echo "AGENTVM_INITRD=$image_dir/initramfs.cpio.gz"
  echo "AGENTVM_INITRD_SHA256=$(cat "$image_dir/initramfs.cpio.gz.sha256")"
  echo "AGENTVM_KERNEL_PACKAGE=$kpkg"
  echo "AGENTVM_KERNEL_VERSION=$kver"
}

if [ -f "$image_dir/complete" ]; then
  echo cached
  print_image
  exit 0
fi

# --- build -------------------------------------------------------------------------------------------
mkdir -p "$cache/debs"
work=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

deb="$cache/debs/${kpkg}_${kver//:/%3a}_amd64.deb"
if [ ! -f "$deb" ]; then
  # apt-get download writes into the working directory; as root it warns that _apt cannot write there.
  (cd "$work" && apt-get download -q "$kpkg=$kver" 2>&1 | grep -v 'Download is performed unsandboxed' >&2 || true)
  fetched=$(find "$work" -maxdepth 1 -name "${kpkg}_*.deb" | head -n 1)
  [ -n "$fetched" ] || die "apt-get download $kpkg=$kver fetched nothing"
  mv "$fetched" "$deb.tmp" && mv "$deb.tmp" "$deb"
fi

dpkg -x "$deb" "$work/pkg"
vmlinuz=$(find "$work/pkg/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n 1)
[ -n "$vmlinuz" ] || die "$deb has no /boot/vmlinuz-*"
moddir=
for d in "$work/pkg/lib/modules" "$work/pkg/usr/lib/modules"; do
  [ -d "$d" ] && moddir=$(find "$d" -mindepth 1 -maxdepth 1 -type d | head -n 1) && break
done
[ -n "$moddir" ] || die "$deb has no lib/modules/<version>"

root="$work/root"
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/lib/modules" "$root/lib/agentvm"
cp "$busybox" "$root/bin/busybox"
# Relative links: `busybox --install -s` would link to the host's resolved path (/usr/bin/busybox on a
# merged-/usr host), which does not exist in the guest.
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf '%s\n' "$init_script" >"$root/init"
printf '%s\n' "$emit_file_script" >"$root/lib/agentvm/emit-file"
chmod 0755 "$root/init" "$root/lib/agentvm/emit-file"
printf '%s\n' "${modules[@]}" >"$root/lib/agentvm/modules"

for m in "${modules[@]}"; do
  src=$(find "$moddir" -type f \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" \) | head -n 1)
  [ -n "$src" ] || die "module $m not found under ${moddir#"$work/pkg"}"
  # busybox insmod reads plain .ko only, so compressed modules are expanded here, on the host.
  case "$src" in
    *.ko) cp "$src" "$root/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$src" >"$root/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$src" >"$root/lib/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$src" >"$root/lib/modules/$m.ko" ;;
  esac
done

stage="$work/image"
mkdir -p "$stage"
cp "$vmlinuz" "$stage/vmlinuz"
# Fixed mtimes and sorted names keep the archive stable between rebuilds (inode numbers still vary).
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -n -9 >"$stage/initramfs.cpio.gz"
# Pad to 4 bytes: a job overlay cpio appended by the host must start 4-byte aligned for the kernel.
size=$(stat -c %s "$stage/initramfs.cpio.gz")
pad=$(( (4 - size % 4) % 4 ))
[ "$pad" -eq 0 ] || head -c "$pad" /dev/zero >>"$stage/initramfs.cpio.gz"
sha256sum "$stage/vmlinuz" | cut -d ' ' -f 1 >"$stage/vmlinuz.sha256"
sha256sum "$stage/initramfs.cpio.gz" | cut -d ' ' -f 1 >"$stage/initramfs.cpio.gz.sha256"
printf 'kernel_package=%s\nkernel_version=%s\nbusybox_version=%s\nmodules=%s\n' \
  "$kpkg" "$kver" "$bbver" "${modules[*]}" >"$stage/manifest"
touch "$stage/complete"

# A concurrent build may have won the race; its image is equivalent, so keep it.
mv -T "$stage" "$image_dir" 2>/dev/null || [ -f "$image_dir/complete" ] || die "could not move the image into $image_dir"
echo built
print_image
