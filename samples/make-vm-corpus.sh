#!/usr/bin/env bash
# Make a corpus of the RAM of several identical virtual machines (not shipped: it is
# large; it is the input for the "identical guests" comparison in docs/cli.md).
#
# Each guest boots the same Debian kernel and the same initramfs under qemu (software
# emulation), with its RAM in a file (memory-backend-file, share=on). Its /init
# unpacks the same source tree into tmpfs, checksums every file and counts words with
# awk — so page cache, tmpfs and freed anonymous memory hold the same data in every
# guest, at addresses of each guest's own choosing (KASLR left on) — then powers off.
# The RAM files, back to back, are the corpus.
#   bash samples/make-vm-corpus.sh [OUTPUT] [GUESTS] [MEM_MIB]
#   (default /tmp/foldswap-vms.pages, 4 guests of 256 MiB)
# Needs: qemu-system-x86_64, busybox-static, apt-get (to fetch the kernel package).
set -euo pipefail
out=${1:-/tmp/foldswap-vms.pages}
guests=${2:-4}
mem=${3:-256}
work=$(mktemp -d /tmp/foldswap-vms.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
    rm -f /dev/shm/foldswap-vm-$$-*
}
trap cleanup EXIT

# The guest kernel: Debian's, unpacked from its package (nothing is installed).
(cd "$work" && apt-get download -q "$(apt-cache depends linux-image-amd64 |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}')" >/dev/null 2>&1)
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
kernel=$(ls "$work"/kernel/boot/vmlinuz-*)

# The initramfs: static busybox, the workload's data, and /init.
root="$work/initramfs"
mkdir -p "$root"/{bin,proc,sys,dev,tmp,data}
cp /bin/busybox "$root/bin/busybox"
pystdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
tar -C "$pystdlib" -czf "$root/data/work.tar.gz" --exclude=__pycache__ --exclude=test \
    email json asyncio http xml logging unittest concurrent
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t tmpfs tmpfs /tmp
tar -xzf /data/work.tar.gz -C /tmp
find /tmp -type f | xargs md5sum > /tmp/sums
cat $(find /tmp -name '*.py') | awk '{ for (i = 1; i <= NF; i++) count[$i]++ } END { for (w in count) n++; print n, "words" }'
echo foldswap-guest-done
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.cpio.gz"

for i in $(seq "$guests"); do
    ram=/dev/shm/foldswap-vm-$$-$i
    qemu-system-x86_64 -m "${mem}M" -smp 1 -nographic -no-reboot \
        -object "memory-backend-file,id=ram,size=${mem}M,mem-path=$ram,share=on" \
        -machine memory-backend=ram \
        -kernel "$kernel" -initrd "$work/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet panic=-1" >"$work/guest-$i.log" 2>&1 &
    pids+=($!)
done
for i in $(seq "$guests"); do
    wait "${pids[$((i - 1))]}" || true
    grep -q foldswap-guest-done "$work/guest-$i.log" || {
        echo "guest $i did not finish:"; tail -20 "$work/guest-$i.log"; exit 1; }
    echo "guest $i: $(grep -o '[0-9]* words' "$work/guest-$i.log")"
done
pids=()
cat /dev/shm/foldswap-vm-$$-* > "$out"
ls -l "$out"
