#!/bin/sh
# PID 1 of a lab host until it execs systemd. Started by `wap lab up` inside the host's own network,
# mount, UTS, IPC, PID and cgroup namespaces; builds the host's root from the shared root filesystem
# (read-only lower layer) and the host's own upper layer, then boots systemd in it.
#   boot.sh ROOTFS HOSTDIR HOSTNAME
set -eu
rootfs=$1 hostdir=$2 name=$3
root=$hostdir/root

mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$hostdir/upper,workdir=$hostdir/work" "$root"
cd "$root"

mount -t proc proc proc
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 sys/fs/cgroup
# A boot id of the host's own, so that Ansible's reboot module sees a reboot.
mount --bind "$hostdir/boot_id" proc/sys/kernel/random/boot_id

mount -t tmpfs -o mode=755,size=16m,nosuid tmpfs dev
for node in null zero full random urandom tty; do
    touch "dev/$node"
    mount --bind "/dev/$node" "dev/$node"
done
touch dev/console
mount --bind "$hostdir/console.log" dev/console
mkdir dev/pts dev/shm dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts dev/pts
ln -s pts/ptmx dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs dev/shm
ln -s /proc/self/fd dev/fd
ln -s /proc/self/fd/0 dev/stdin
ln -s /proc/self/fd/1 dev/stdout
ln -s /proc/self/fd/2 dev/stderr
mount -t tmpfs -o mode=755,nosuid,nodev,size=64m tmpfs run

hostname "$name"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot

exec env -i container=wap-lab TERM=linux /lib/systemd/systemd --show-status=no
