#!/bin/busybox sh
# PID 1 of the VM lab (tests/vmlab/harness.py builds it into the initramfs).
#
# Loads the modules the host kernel lacks (802.1Q, bridge with VLAN
# filtering, veth, macvlan) and the ones to reach the host (virtio, 9p),
# mounts the host's root read-only over 9p, gives it private tmpfs where
# programs write, and runs /run/vmlab/job.sh (written by the host) chrooted
# into it. The job's exit code and output land in the writable 9p share
# "io"; the console only shows the init's own progress. The VM has no
# network to the outside at all (qemu -nic none).
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin

stop() {
    sync
    umount /newroot/run/vmlab 2>/dev/null
    # qemu runs with -no-reboot: a reboot ends it.
    reboot -f
    sleep 60
}
fail() {
    echo "vmlab-init: $*"
    echo "VMLAB-INIT-FAILED"
    stop
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "vmlab-init: kernel up $(cut -d' ' -f1 /proc/uptime) s"
for m in $(cat /modules); do
    insmod "/lib/modules/$m.ko" || fail "insmod $m failed"
done

opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,ro,cache=loose" root /newroot || fail "mounting the host's root over 9p failed"
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "tmpfs on /tmp"
mount -t tmpfs -o mode=755 tmpfs /newroot/run || fail "tmpfs on /run"
mkdir -p /newroot/run/vmlab /newroot/run/netns /newroot/run/lock
mount -t 9p -o "$opts" io /newroot/run/vmlab || fail "mounting the io share failed"
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/shm /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
# /root stays: the venv's python may live under it (pyenv).
for d in /var/tmp /var/lock; do
    [ -d "/newroot$d" ] && [ ! -L "/newroot$d" ] && mount -t tmpfs -o mode=1777 tmpfs "/newroot$d"
done
# The job's folder (a checkout may sit under /tmp, /run or /var/tmp, now hidden by tmpfs):
# its own share, mounted over its path (harness.py passes the path in work_path).
if [ -s /newroot/run/vmlab/work_path ]; then
    wp=$(cat /newroot/run/vmlab/work_path)
    mkdir -p "/newroot$wp" 2>/dev/null
    mount -t 9p -o "$opts,ro,cache=loose" work "/newroot$wp" || fail "mounting $wp over 9p failed"
fi
ip link set lo up
echo "vmlab-init: root mounted $(cut -d' ' -f1 /proc/uptime) s"

chroot /newroot /bin/sh /run/vmlab/job.sh
echo "vmlab-init: job exited $? at $(cut -d' ' -f1 /proc/uptime) s"
echo "VMLAB-DONE"
stop
