#!/usr/bin/env bash
# build-test-image.sh: builds the kernel + busybox initramfs that Tier-2 microVM jobs boot (and that
# test/microvm-*.test.ts boots), and a small ext4 test disk for `rootfs.format: disk` jobs. Owns the guest side of
# the job protocol: the /init script below.
#
# Usage: scripts/build-test-image.sh [--cache DIR]
#   DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/agentvm/images (outside the clone).
# Needs: apt (package lists up to date), busybox-static installed, gzip, e2fsprogs (mke2fs, for the test disk), gcc and
# libc6-dev (the static job launcher);
# xz/zstd only if the kernel package ships compressed modules.
# Prints `cached` or `built`, then KEY=VALUE lines (AGENTVM_KERNEL, AGENTVM_KERNEL_SHA256, AGENTVM_INITRD,
# AGENTVM_INITRD_SHA256, AGENTVM_DISK, AGENTVM_DISK_SHA256, AGENTVM_KERNEL_PACKAGE, AGENTVM_KERNEL_VERSION)
# that callers parse. The test disk (raw, ext4, label agentvm-root) holds busybox with its applet links, the
# marker file /etc/agentvm-disk (content: `agentvm test disk v1`) and the empty mount points /proc /sys /dev /tmp
# /job that /init binds into it; it is built bit-reproducibly (fixed UUID, hash seed, times).
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

# Virtio modules, in load order (each depends only on the ones before it; virtio_blk: virtio, virtio_ring).
modules=(virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net)

# ---------------------------------------------------------------------------------------------------
# Guest /init: the job protocol (host side: src/providers/microvm/protocol.ts). Keep the two in step.
#
# Kernel command line: agentvm.nonce=<32 hex>            (required; tags every protocol record)
#                      agentvm.job=<base64 sh script>    (optional; used when the overlay has no /job/run)
#                      agentvm.net=1                     (load the virtio-net modules before the job)
#                      agentvm.disk=1                    (the job's root is the read-only ext4 disk /dev/vda:
#                                                         /init mounts it on /rootfs, binds /proc /sys /dev and
#                                                         /job into it, mounts a tmpfs on its /tmp, and runs the
#                                                         job chrooted there; results still come from /job/out)
#                      agentvm.probe=1                   (print AGENTVM-PROBE-OK and power off at once)
# Job overlay (newc cpio archives appended to the initramfs): /job/run (sh script), /job/in/* (inputs), and for a
# confined job (decisions/0022, 0024) /job/entry (the command's program), /job/tools/* (the declared programs) and
# /srv/agentvm/data/* (read-only copies of the data grants).
# Without /job/entry the job runs as `sh /job/run` in /job/in as root (the low-level test harness only). With it,
# /init runs /lib/agentvm/confine as root in a private mount namespace: every mount there becomes noexec except the
# entrypoint (and its #! interpreter) and /job/tools, /srv/agentvm/data is read-only, user namespaces are off, and
# /job/run's last line `exec "$AGENTVM_LAUNCH" <argv>` goes through /lib/agentvm/launch, which drops to uid/gid 1000
# without capabilities, sets no_new_privs, denies memfd_create and execs the argv.
# Either way: stdin /dev/null, stdout+stderr on the console, AGENTVM_IN=/job/in and AGENTVM_OUT=/job/out; regular
# files left under /job/out are the results.
# Console records, one per line, each `AGENTVM-<TAG> <nonce>[ <fields>]`:
#   CONFINED                                a confined job's namespace, mounts and launcher are ready (then READY)
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
# insmod once per module (net and disk share the virtio core).
load_module() { [ -d "/sys/module/$1" ] || insmod "/lib/modules/$1.ko" || record ERROR "insmod $1 failed"; }
# After the last record: the host stops the VM as soon as it has read EXIT. poweroff -f does not wait for the
# serial port to drain, so powering off at once could cut the record off; this is only the fallback.
exit_then_halt() { record EXIT "$1"; sleep 3; halt_now; }

nonce=
job_b64=
net=
disk=
probe=
for word in $(cat /proc/cmdline); do
  case "$word" in
    agentvm.nonce=*) nonce="${word#agentvm.nonce=}" ;;
    agentvm.job=*) job_b64="${word#agentvm.job=}" ;;
    agentvm.net=1) net=1 ;;
    agentvm.disk=1) disk=1 ;;
    agentvm.probe=1) probe=1 ;;
  esac
done
[ -n "$nonce" ] || nonce=0
record() { echo "AGENTVM-$1 $nonce${2:+ $2}"; }

if [ -n "$probe" ]; then record PROBE-OK; halt_now; fi

if [ -n "$net" ]; then
  for m in virtio_ring virtio virtio_mmio failover net_failover virtio_net; do load_module "$m"; done
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

if [ -n "$disk" ]; then
  for m in virtio_ring virtio virtio_mmio virtio_blk; do load_module "$m"; done
  # devtmpfs creates /dev/vda once virtio_blk has probed the device; give it 5 s, never wait forever.
  tries=0
  while [ ! -b /dev/vda ] && [ "$tries" -lt 100 ]; do usleep 50000; tries=$((tries + 1)); done
  [ -b /dev/vda ] || { record ERROR "no root disk: /dev/vda did not appear"; exit_then_halt 125; }
  mkdir -p /rootfs
  mount -o ro -t ext4 /dev/vda /rootfs || { record ERROR "mount of the root disk /dev/vda failed"; exit_then_halt 125; }
  for d in proc sys dev job tmp; do
    [ -d "/rootfs/$d" ] || { record ERROR "the root disk has no /$d mount point"; exit_then_halt 125; }
  done
  { mount -t proc proc /rootfs/proc && mount -t sysfs sys /rootfs/sys && mount -o bind /dev /rootfs/dev &&
    mount -o bind /job /rootfs/job && mount -t tmpfs -o mode=1777 tmp /rootfs/tmp; } ||
    { record ERROR "could not prepare the mounts inside the root disk"; exit_then_halt 125; }
  [ -x /rootfs/bin/sh ] || { record ERROR "the root disk has no /bin/sh"; exit_then_halt 125; }
fi

jroot=
[ -z "$disk" ] || jroot=/rootfs
# Granted data (read-only copies in the overlay) at its fixed mount point, read-only and noexec for everyone.
if [ -d /srv/agentvm/data ]; then
  [ -z "$disk" ] || [ -d /rootfs/srv/agentvm/data ] ||
    { record ERROR "the root disk has no /srv/agentvm/data mount point for the job's data"; exit_then_halt 125; }
  { mount -o bind /srv/agentvm/data "$jroot/srv/agentvm/data" &&
    mount -o remount,bind,ro,nosuid,nodev,noexec "$jroot/srv/agentvm/data"; } ||
    { record ERROR "could not mount the job's data read-only"; exit_then_halt 125; }
fi
if [ -f /job/entry ]; then
  # No user namespaces: inside one an unprivileged job could mount a fresh, exec tmpfs.
  # (A kernel without user namespaces has no such file, and nothing to turn off.)
  [ ! -e /proc/sys/user/max_user_namespaces ] || echo 0 >/proc/sys/user/max_user_namespaces ||
    { record ERROR "could not turn off user namespaces"; exit_then_halt 125; }
  [ ! -w /proc/sys/vm/memfd_noexec ] || echo 2 >/proc/sys/vm/memfd_noexec
  chmod 1777 "$jroot/tmp"
  chown -R 1000:1000 /job/out
fi

[ -f /job/entry ] || record READY
if [ -f /job/entry ]; then
  AGENTVM_NONCE="$nonce" unshare -m --propagation private sh /lib/agentvm/confine "$jroot"
elif [ -n "$disk" ]; then
  chroot /rootfs /bin/sh -c 'cd /job/in && AGENTVM_IN=/job/in AGENTVM_OUT=/job/out HOME=/tmp sh /job/run'
else
  cd /job/in
  AGENTVM_IN=/job/in AGENTVM_OUT=/job/out HOME=/tmp sh /job/run
fi
code=$?
cd /
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

# /lib/agentvm/confine ROOT: runs as root in a private mount namespace; ends by sourcing /job/run, whose last line
# execs the job through /lib/agentvm/launch. ROOT is "" (initramfs job) or /rootfs (disk job).
read -r -d '' confine_script <<'CONFINE' || true
#!/bin/sh
# Invariant: when the job's program starts, every mount of its namespace is noexec except the bind mounts of the
# files it may execute (its entrypoint, that file's #! interpreter, /job/tools), and it runs as uid 1000 without
# capabilities, so it cannot remount, unmount or make a new namespace (user namespaces are off: /init).
R="$1"
L=/run/agentvm-launch
fail() { echo "AGENTVM-ERROR $AGENTVM_NONCE $1"; exit 125; }
keep=" $L $L/launch "
allow() { # bind-mount a file onto itself: a mount of its own, which the noexec pass below leaves alone
  [ -f "$1" ] || return 1
  mount -o bind "$1" "$1" || fail "could not allow $1"
  keep="$keep$(readlink -f "$1") "
}
# The launcher, reachable only by root: a 0700 directory the job (uid 1000) cannot search.
mkdir -p "$L" && chmod 0700 "$L" && touch "$L/launch" && mount -o bind /lib/agentvm/launch "$L/launch" ||
  fail "could not prepare the launcher"
# A dynamically linked program maps its loader and libraries executable: allow them too. The loader is the first of
# the known ones the file names; `ld.so --list` (which loads, never runs, the program) names the libraries, resolved
# in the job's own root.
allow_program() { # $1: path inside the job's root
  allow "$R$1" || return 1
  for ld in /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-aarch64.so.1; do
    [ -e "$R$ld" ] && grep -q "$ld" "$R$1" 2>/dev/null || continue
    allow "$R$ld" || return 1
    for lib in $(chroot "${R:-/}" "$ld" --list "$1" 2>/dev/null |
      sed -n 's/.*=> \(\/[^ ]*\) (0x.*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p'); do
      allow "$R$lib" || return 1
    done
    break
  done
}
entry=$(cat /job/entry)
case "$entry" in
  */*) path="$entry" ;;
  *) path=; for d in $(echo "$PATH" | tr : ' '); do [ -e "$R$d/$entry" ] && { path="$d/$entry"; break; }; done ;;
esac
[ -n "$path" ] && allow_program "$path" || fail "the job's program $entry is not a file in its root"
# A script's #! interpreter runs it: declaring the script declares its interpreter (as for services, ADR 0022).
if [ "$(head -c 2 "$R$path")" = '#!' ]; then
  interp=$(head -n 1 "$R$path" | sed 's/^#! *//; s/[ \t].*//')
  allow_program "$interp" || fail "the interpreter $interp of $entry is not a file in the job's root"
fi
if [ -d "$R/job/tools" ]; then
  mount -o bind "$R/job/tools" "$R/job/tools" && mount -o remount,bind,ro,nosuid,nodev "$R/job/tools" ||
    fail "could not mount the job's programs"
  keep="$keep$R/job/tools "
fi
# Everything else noexec and nosuid, keeping ro and nodev as they were.
while read -r _ mp _ opts _; do
  case "$keep" in *" $mp "*) continue ;; esac
  flags=nosuid,noexec
  case ",$opts," in *,ro,*) flags="$flags,ro" ;; esac
  case ",$opts," in *,nodev,*) flags="$flags,nodev" ;; esac
  mount -o "remount,bind,$flags" "$mp" || fail "could not make $mp noexec"
done </proc/self/mounts
export AGENTVM_IN=/job/in AGENTVM_OUT=/job/out HOME=/tmp AGENTVM_TOOLS=/job/tools AGENTVM_LAUNCH="$L/launch"
[ -z "$R" ] || export AGENTVM_CHROOT="$R"
export PATH="/job/tools:$PATH"
cd /job/in || fail "no /job/in"
# The host starts the job's clock at READY and refuses a READY that no CONFINED preceded.
echo "AGENTVM-CONFINED $AGENTVM_NONCE"
echo "AGENTVM-READY $AGENTVM_NONCE"
. /job/run
CONFINE

# /lib/agentvm/launch (static C): the last step before the job's own program. Root → uid/gid 1000 with no groups and
# no capabilities, no_new_privs, memfd_create denied (an anonymous file is on no mount, so noexec cannot cover it;
# the guest kernel predates vm.memfd_noexec), then execvp. With AGENTVM_CHROOT it chroots first (disk jobs).
read -r -d '' launch_source <<'LAUNCH' || true
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define JOB_ID 1000
#define X32_BIT 0x40000000

static int die(const char *what) { perror(what); return 125; }

int main(int argc, char **argv) {
  if (argc < 2) { fputs("launch: no program\n", stderr); return 125; }
  const char *root = getenv("AGENTVM_CHROOT");
  if (root != NULL && root[0] != '\0' && (chroot(root) != 0 || chdir("/") != 0)) return die("launch: chroot");
  unsetenv("AGENTVM_CHROOT");
  unsetenv("AGENTVM_LAUNCH");
  if (chdir("/job/in") != 0) return die("launch: /job/in");
  if (setgroups(0, NULL) != 0 || setresgid(JOB_ID, JOB_ID, JOB_ID) != 0 || setresuid(JOB_ID, JOB_ID, JOB_ID) != 0)
    return die("launch: dropping privileges");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return die("launch: no_new_privs");
  struct sock_filter filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_BIT, 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_memfd_create, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return die("launch: seccomp");
  execvp(argv[1], argv + 1);
  int code = errno == ENOENT ? 127 : 126;
  fprintf(stderr, "launch: %s: %s\n", argv[1], errno == EACCES ? "not executable here (not the job's program or a declared tool)" : "cannot execute");
  return code;
}
LAUNCH

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
command -v mke2fs >/dev/null || die "mke2fs is not installed: apt-get install e2fsprogs"
cc=$(command -v gcc || command -v cc || true)
[ -n "$cc" ] && [ -f /usr/lib/x86_64-linux-gnu/libc.a ] ||
  die "a C compiler with a static libc is needed for the job launcher: apt-get install gcc libc6-dev"
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
  echo "AGENTVM_DISK=$image_dir/rootfs.ext4"
  echo "AGENTVM_DISK_SHA256=$(cat "$image_dir/rootfs.ext4.sha256")"
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
printf '%s\n' "$confine_script" >"$root/lib/agentvm/confine"
printf '%s\n' "$launch_source" >"$work/launch.c"
"$cc" -static -Os -s -o "$root/lib/agentvm/launch" "$work/launch.c" || die "could not compile the job launcher"
chmod 0755 "$root/init" "$root/lib/agentvm/emit-file" "$root/lib/agentvm/confine" "$root/lib/agentvm/launch"
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

# The test disk for `rootfs.format: disk` jobs: busybox as its userland, a marker file a job can read to prove it
# runs in the disk root, and the mount points /init binds into it. No journal (it is mounted read-only).
disk_root="$work/disk"
mkdir -p "$disk_root/bin" "$disk_root/etc" "$disk_root/proc" "$disk_root/sys" "$disk_root/dev" "$disk_root/tmp" "$disk_root/job" "$disk_root/srv/agentvm/data"
cp "$busybox" "$disk_root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$disk_root/bin/$applet"
done
echo 'agentvm test disk v1' >"$disk_root/etc/agentvm-disk"
find "$disk_root" -exec touch -h -d @0 {} +
# Fixed UUID, hash seed and clock (E2FSPROGS_FAKE_TIME) make the image bit-reproducible.
disk_uuid=6a9e0c52-1b7e-4f0e-9a55-a9e47c0d15c0
E2FSPROGS_FAKE_TIME=1 mke2fs -q -F -t ext4 -O ^has_journal -d "$disk_root" -r 1 -N 0 -m 0 -L agentvm-root \
  -U "$disk_uuid" -E "hash_seed=$disk_uuid,root_owner=0:0" "$stage/rootfs.ext4" 8M >/dev/null ||
  die "mke2fs could not build the test disk"
# mke2fs -d copies each file's ctime, which touch cannot set (e2fsprogs 1.47.0 ignores SOURCE_DATE_EPOCH): zero it.
(cd "$disk_root" && find . -mindepth 1 | LC_ALL=C sort | sed 's|^\.\(.*\)$|sif "\1" ctime 0|') |
  E2FSPROGS_FAKE_TIME=1 debugfs -w -f - "$stage/rootfs.ext4" >/dev/null 2>&1 || die "debugfs could not normalise the test disk"
sha256sum "$stage/rootfs.ext4" | cut -d ' ' -f 1 >"$stage/rootfs.ext4.sha256"
sha256sum "$stage/vmlinuz" | cut -d ' ' -f 1 >"$stage/vmlinuz.sha256"
sha256sum "$stage/initramfs.cpio.gz" | cut -d ' ' -f 1 >"$stage/initramfs.cpio.gz.sha256"
printf 'kernel_package=%s\nkernel_version=%s\nbusybox_version=%s\nmodules=%s\n' \
  "$kpkg" "$kver" "$bbver" "${modules[*]}" >"$stage/manifest"
touch "$stage/complete"

# A concurrent build may have won the race; its image is equivalent, so keep it.
mv -T "$stage" "$image_dir" 2>/dev/null || [ -f "$image_dir/complete" ] || die "could not move the image into $image_dir"
echo built
print_image
