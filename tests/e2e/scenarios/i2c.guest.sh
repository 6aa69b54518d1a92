# Guest half of scenario "i2c": scan the virtio-i2c bus (read-byte probes: virtio-i2c has no
# SMBus quick command), write a byte into the EEPROM and read it back, read the LM75.
bus=$(ls /sys/class/i2c-dev 2>/dev/null | head -1 | sed 's/i2c-//')
[ -n "$bus" ] || { echo "E2E-GUEST-I2C-DETECT none (no /dev/i2c-*; virtio: $(ls /sys/bus/virtio/devices))"; exit 1; }
i2cdetect -y -r "$bus"
found=$(i2cdetect -y -r "$bus" | awk 'NR > 1 { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9a-f][0-9a-f]$/) printf "%s ", $i }')
echo "E2E-GUEST-I2C-DETECT bus=$bus $found"
i2cset -y "$bus" 0x50 0x10 0xa5
sleep 0.1
got=$(i2cget -y "$bus" 0x50 0x10)
temp=$(i2cget -y "$bus" 0x48 0x00 w)
echo "E2E-GUEST-I2C-RT wrote=0xa5 got=$got lm75=$temp"
