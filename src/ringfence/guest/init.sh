#!/bin/busybox sh
# /init of ringfence's tiny guest (built into the initramfs by ringfence.guest.image).
#
# Kernel command line: rfname=NAME (the VM's name) and rfip=A.B.C.D/NN (optional).
# - serves HTTP on port 80 (busybox httpd): / says "hello from NAME", /counter is the last
#   heartbeat number, /boot is this boot's id;
# - writes a heartbeat record every 200 ms to its virtio disk /dev/vda, with O_DIRECT so that
#   every record reaches the image file on the host at once (the domain uses cache='none').
#   Sector 0 holds the latest record, sectors 1..N a ring of all records (slot 1 + SEQ % N).
#   A record is one 512-byte sector: "RFHB1 NAME BOOT SEQ UPTIME" padded with spaces.
#   BOOT is random per boot; SEQ continues from the record in sector 0, so a guest restarted
#   elsewhere on the same disk carries on counting, and a live-migrated guest keeps its BOOT.
#   Two copies running at once show up as two BOOTs interleaved along SEQ.
# - runs QEMU's guest agent (qemu-ga) on the org.qemu.guest_agent.0 port, if the domain has it.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
NAME=guest
IP=
for kv in $(cat /proc/cmdline); do
  case "$kv" in
    rfname=*) NAME=${kv#rfname=} ;;
    rfip=*) IP=${kv#rfip=} ;;
  esac
done
hostname "$NAME"
# busybox insmod resolves no dependencies: this order is theirs.
for m in @MODULES@; do
  insmod "/lib/modules/$m.ko" 2>/dev/ttyS0
done
BOOT=$(head -c 8 /proc/sys/kernel/random/uuid)
mkdir -p /www
echo "hello from $NAME" > /www/index.html
echo "$BOOT" > /www/boot
ip link set lo up
if [ -n "$IP" ] && [ -e /sys/class/net/eth0 ]; then
  ip addr add "$IP" dev eth0
  ip link set eth0 up
fi
httpd -p 80 -h /www
# QEMU's guest agent (`verify: {guest_agent: true}`) on the virtio-serial port that the domain
# names org.qemu.guest_agent.0: its /dev/vportNpM shows up a little after virtio_console has
# loaded, and no udev makes the by-name link, so look the port up by name. Started again if
# it exits (looked for 30 s, then given up: a domain without the channel); in the background,
# so that the heartbeat never waits for it.
guest_agent() {
  looked=0
  while [ $looked -lt 150 ]; do
    looked=$((looked + 1))
    for port in /sys/class/virtio-ports/*; do
      if [ "$(cat "$port/name" 2>/dev/null)" = org.qemu.guest_agent.0 ]; then
        LD_LIBRARY_PATH=/lib/x86_64-linux-gnu /usr/sbin/qemu-ga -m virtio-serial \
          -p "/dev/${port##*/}" -t /run -f /run/qemu-ga.pid 2>/dev/ttyS0
        looked=0
      fi
    done
    usleep 200000
  done
  echo "RFHB no guest agent port org.qemu.guest_agent.0: qemu-ga not started" > /dev/ttyS0
}
if [ -x /usr/sbin/qemu-ga ]; then guest_agent & fi
DISK=/dev/vda
n=0
while [ ! -b $DISK ] && [ $n -lt 50 ]; do usleep 100000; n=$((n + 1)); done
if [ ! -b $DISK ]; then
  echo "RFHB no disk $DISK: no heartbeat" > /dev/ttyS0
  exec sleep 2147483647
fi
SLOTS=$(( $(cat /sys/block/vda/size) - 1 ))
SEQ=0
set -- $(dd if=$DISK bs=512 count=1 iflag=direct 2>/dev/null | head -n 1)
if [ "$1" = RFHB1 ] && [ "$2" = "$NAME" ] && [ -n "$4" ]; then SEQ=$(( $4 + 1 )); fi
echo "RFHB booted $NAME boot=$BOOT seq=$SEQ uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
while :; do
  printf '%-511s\n' "RFHB1 $NAME $BOOT $SEQ $(cut -d' ' -f1 /proc/uptime)" > /tmp/record
  dd if=/tmp/record of=$DISK bs=512 seek=$(( 1 + SEQ % SLOTS )) count=1 conv=notrunc \
    oflag=direct 2>/dev/null
  dd if=/tmp/record of=$DISK bs=512 count=1 conv=notrunc oflag=direct 2>/dev/null
  echo "$SEQ" > /www/counter
  SEQ=$((SEQ + 1))
  usleep 200000
done
