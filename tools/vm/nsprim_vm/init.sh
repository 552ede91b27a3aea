#!/bin/sh
# /init of the nsprim test VM (busybox sh, PID 1).  Parameters come from the kernel command line:
#   nsprim.work=B64PATH   project directory, shared read-write as 9p tag "work", mounted at the same path
#   nsprim.cmd=B64SCRIPT  the shell script to run in the chroot (or nsprim.cmdfile=B64PATH: read it from the host root)
#   nsprim.wcache=MODE    9p cache mode of the project share (loose or none)
# It prints NSPRIM-VM-START just before the command and NSPRIM-VM-EXIT=<status> after it, then powers off.
PATH=/bin
export PATH

fail() {
    echo "vm-init: $*"
    dmesg | tail -n 30
    echo "NSPRIM-VM-EXIT=125"
    poweroff -f
    echo o >/proc/sysrq-trigger
    exit 1
}

mount -t proc proc /proc || fail "cannot mount /proc"
mount -t sysfs sysfs /sys || fail "cannot mount /sys"

while read -r mod; do
    insmod "/modules/$mod" || fail "insmod $mod failed"
done </modules/order

cmd=
cmdfile=
work=
wcache=loose
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        nsprim.cmd=*) cmd=${arg#nsprim.cmd=} ;;
        nsprim.cmdfile=*) cmdfile=$(echo "${arg#nsprim.cmdfile=}" | base64 -d) ;;
        nsprim.wcache=*) wcache=${arg#nsprim.wcache=} ;;
        nsprim.work=*) work=$(echo "${arg#nsprim.work=}" | base64 -d) ;;
    esac
done
[ -n "$work" ] || fail "no nsprim.work= on the kernel command line"

R=/newroot
opts=trans=virtio,version=9p2000.L,msize=262144
# Nothing changes the shared files on the host while the VM runs: let the guest cache them (much faster Python
# imports under TCG).  The guest's own writes are written through; /init syncs before powering off.
mount -t 9p -o "$opts,ro,cache=loose" hostroot $R || fail "cannot mount the host root over 9p"
if [ -n "$cmdfile" ]; then
    cat "$R$cmdfile" >/cmd.sh || fail "cannot read the command file $cmdfile"
else
    echo "$cmd" | base64 -d >/cmd.sh || fail "cannot decode the command"
fi
mount -t proc proc $R/proc || fail "cannot mount proc"
mount -t sysfs sysfs $R/sys || fail "cannot mount sysfs"
mount -t devtmpfs devtmpfs $R/dev || fail "cannot mount devtmpfs"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts || fail "cannot mount devpts"
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm || fail "cannot mount /dev/shm"
mount -t tmpfs -o mode=1777 tmpfs $R/tmp || fail "cannot mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs $R/run || fail "cannot mount /run"
mount -t cgroup2 -o nsdelegate cgroup2 $R/sys/fs/cgroup || fail "cannot mount cgroup2"
mkdir -p "$R$work" || fail "cannot create the mount point $work"  # needed if it lies under /tmp or /run
mount -t 9p -o "$opts,rw,cache=$wcache" work "$R$work" || fail "cannot mount the project share at $work"

script=$(cat /cmd.sh)
# The new root is moved over / (as switch_root does), not merely chrooted into: the kernel refuses user
# namespaces to a chrooted process.  This shell keeps the initramfs as its root (for poweroff).
cd $R && mount --move . / || fail "cannot move the new root over /"
echo "NSPRIM-VM-START"
# PID 1 (this shell) reaps orphans: ash waits with waitpid(-1) while the command runs.
chroot . /bin/sh -c "$script"
status=$?
sync
echo "NSPRIM-VM-EXIT=$status"
poweroff -f
echo o >/proc/sysrq-trigger
