# Kernel acquisition for the testbed (sourced by scripts/testbed).
#   iommufd: built from Debian sid's newest linux-source-X package with iommufd-kernel.config.
#   stock:   Debian bookworm's linux-image-amd64 (VFIO type1 path), unpacked, never installed.
# Results live under $PINLESS_CACHE/kernels/<kind>-<version>-<confighash>/ and a
# $PINLESS_CACHE/kernels/<kind>.current symlink names the one in use.

KERNEL_BUILD_DEPS=(bc bison flex libelf-dev libssl-dev cpio kmod xz-utils rsync make gcc)
KERNEL_RECIPE_VERSION=1   # bump when the build recipe (not the config) changes

tb_kernel_dir() { readlink -f "$PINLESS_CACHE/kernels/$1.current" 2>/dev/null; }

# Prints the newest linux-source-X.Y package name and version offered by sid.
tb_sid_linux_source() {
  tb_sid_apt apt-cache show linux-source 2>/dev/null |
    awk '!done && /^Depends:/ { if (match($0, /linux-source-[0-9.]+ \(= [^)]+\)/)) { s=substr($0,RSTART,RLENGTH); gsub(/[()=]/,"",s); print s; done=1 } }'
}

tb_setup_iommufd_kernel() {
  tb_apt_install "${KERNEL_BUILD_DEPS[@]}"
  tb_sid_update
  local pkg ver src_line
  src_line=$(tb_sid_linux_source) || tb_die "apt-cache show linux-source (Debian sid) failed"
  read -r pkg ver <<<"$src_line" || true
  [ -n "$pkg" ] && [ -n "$ver" ] || tb_die "Debian sid offers no linux-source package (apt-cache show linux-source)"
  local cfg=$TESTBED_D/iommufd-kernel.config
  local key; key=$(printf '%s %s %s' "$ver" "$KERNEL_RECIPE_VERSION" "$(sha256sum <"$cfg")" | sha256sum | cut -c1-12)
  local out=$PINLESS_CACHE/kernels/iommufd-$ver-$key
  if [ -s "$out/bzImage" ]; then
    tb_log "iommufd kernel $pkg $ver (config $key) already built: $out/bzImage (nothing to do)"
    ln -sfn "$out" "$PINLESS_CACHE/kernels/iommufd.current"
    return 0
  fi
  mkdir -p "$PINLESS_CACHE/kernels" "$PINLESS_CACHE/src"
  local t0=$SECONDS
  # A glob, not $(ls ... | head): with nothing cached yet, ls fails and pipefail + errexit
  # would end the script without a word (issue 9).
  local deb="" f
  for f in "$PINLESS_CACHE"/apt-sid/archives/"${pkg}"_*"${ver##*:}"_all.deb; do [ -s "$f" ] && deb=$f; done
  if [ -z "$deb" ]; then
    tb_log "downloading $pkg $ver from Debian sid (about 160 MB)"
    (cd "$PINLESS_CACHE/apt-sid/archives" && tb_sid_apt apt-get -qq download "$pkg=$ver") || tb_die "download of $pkg=$ver failed"
    for f in "$PINLESS_CACHE"/apt-sid/archives/"${pkg}"_*.deb; do [ -s "$f" ] && deb=$f; done
    [ -n "$deb" ] || tb_die "apt-get download $pkg=$ver left no .deb in $PINLESS_CACHE/apt-sid/archives"
  fi
  local src=$PINLESS_CACHE/src/$pkg-$ver
  if [ ! -f "$src/.unpacked" ]; then
    tb_log "unpacking kernel source into $src"
    rm -rf "$src" "$src.tmp"; mkdir -p "$src.tmp"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' | tar -xJ -C "$src.tmp" \
      || tb_die "unpacking $deb failed"
    mv "$src.tmp"/linux-source-* "$src" && rmdir "$src.tmp" && touch "$src/.unpacked"
  fi
  local bld=$PINLESS_CACHE/build/iommufd-$ver-$key
  mkdir -p "$bld"
  tb_log "configuring (x86_64_defconfig + kvm_guest.config + $(basename "$cfg"))"
  make -s -C "$src" O="$bld" x86_64_defconfig >/dev/null || tb_die "defconfig failed"
  make -s -C "$src" O="$bld" kvm_guest.config >/dev/null || tb_die "kvm_guest.config failed"
  "$src/scripts/kconfig/merge_config.sh" -m -O "$bld" "$bld/.config" "$cfg" >"$bld/merge.log" 2>&1 || tb_die "merge_config failed: $bld/merge.log"
  make -s -C "$src" O="$bld" olddefconfig >/dev/null || tb_die "olddefconfig failed"
  local opt missing=()
  for opt in IOMMUFD VFIO_DEVICE_CDEV IOMMUFD_TEST KVM_AMD INTEL_IOMMU AMD_IOMMU VIRTIO_IOMMU VFIO_PCI 9P_FS NET_9P_VIRTIO IOMMU_IOPF; do
    grep -q "^CONFIG_$opt=y" "$bld/.config" || missing+=("$opt")
  done
  [ ${#missing[@]} -eq 0 ] || tb_die "kernel config lost required options: ${missing[*]} (see $bld/merge.log)"
  local jobs; jobs=$(nproc)
  tb_log "building bzImage with make -j$jobs (about 20 minutes on 2 cores; log: $bld/build.log)"
  make -C "$src" O="$bld" -j"$jobs" bzImage >"$bld/build.log" 2>&1 &
  local pid=$! rc=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 60
    if kill -0 "$pid" 2>/dev/null; then
      tb_log "  still building ($(( (SECONDS - t0) / 60 )) min; $(grep -c '^  CC' "$bld/build.log") files compiled)"
    fi
  done
  wait "$pid" || rc=$?
  if [ "$rc" != 0 ] || [ ! -s "$bld/arch/x86/boot/bzImage" ]; then
    tail -20 "$bld/build.log" >&2
    tb_die "kernel build failed (make exited $rc); full log: $bld/build.log"
  fi
  mkdir -p "$out"
  cp "$bld/arch/x86/boot/bzImage" "$out/bzImage.tmp" && mv "$out/bzImage.tmp" "$out/bzImage"
  cp "$bld/.config" "$out/config"
  [ -f "$bld/vmlinux" ] && cp "$bld/vmlinux" "$out/vmlinux"
  printf '%s %s\n' "$pkg" "$ver" >"$out/source"
  ln -sfn "$out" "$PINLESS_CACHE/kernels/iommufd.current"
  rm -rf "$bld"
  tb_log "iommufd kernel ready: $out/bzImage ($(( SECONDS - t0 )) s)"
}

# Stock bookworm kernel: image + the modules L1 needs, decompressed, with modules.dep.
STOCK_MODULES=(kvm kvm_amd vfio vfio_iommu_type1 vfio_pci vfio_pci_core irqbypass 9p 9pnet 9pnet_virtio
               virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev virtio virtio_ring netfs fscache)

tb_setup_stock_kernel() {
  local pkg ver
  # awk reads to the end (no early exit): an early exit would SIGPIPE apt-cache and, under
  # pipefail, fail the assignment.
  local find_pkg='!p && /Depends: linux-image-[0-9]/ { p = $2 } END { if (p) print p }'
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk "$find_pkg") || pkg=""
  if [ -z "$pkg" ]; then
    apt-get -qq update >/dev/null || tb_die "apt-get update failed"
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk "$find_pkg") || pkg=""
  fi
  [ -n "$pkg" ] || tb_die "no linux-image-amd64 in the system's apt sources"
  ver=$(apt-cache policy "$pkg" | awk '/Candidate:/{print $2}')
  local out=$PINLESS_CACHE/kernels/stock-$pkg-$ver-r$KERNEL_RECIPE_VERSION
  if [ -s "$out/vmlinuz" ] && [ -f "$out/.complete" ]; then
    tb_log "stock kernel $pkg $ver already unpacked: $out (nothing to do)"
    ln -sfn "$out" "$PINLESS_CACHE/kernels/stock.current"
    return 0
  fi
  tb_apt_install kmod xz-utils zstd
  local dl=$PINLESS_CACHE/debs; mkdir -p "$dl"
  tb_log "downloading $pkg $ver (Debian bookworm, unpacked only, never installed)"
  (cd "$dl" && apt-get -qq -o APT::Sandbox::User=root download "$pkg=$ver") || tb_die "download of $pkg failed"
  rm -rf "$out" && mkdir -p "$out/root"
  local deb="" f
  for f in "$dl/${pkg}_"*"${ver##*:}"*.deb; do [ -s "$f" ] && deb=$f; done
  [ -n "$deb" ] || tb_die "apt-get download $pkg=$ver left no .deb in $dl"
  dpkg -x "$deb" "$out/root" || tb_die "dpkg -x $deb failed"
  local kver="" m
  for m in "$out/root/lib/modules"/*; do [ -d "$m" ] && kver=$(basename "$m") && break; done
  [ -n "$kver" ] || tb_die "$deb holds no lib/modules/<version>"
  cp "$out/root/boot/vmlinuz-$kver" "$out/vmlinuz"
  # Decompress modules (busybox insmod cannot read .ko.xz/.zst) and rebuild modules.dep.
  find "$out/root/lib/modules" -name '*.ko.xz' -exec xz -d {} + 2>/dev/null
  find "$out/root/lib/modules" -name '*.ko.zst' -exec zstd -q --rm -d {} + 2>/dev/null
  depmod -b "$out/root" "$kver" || tb_die "depmod failed for $kver"
  echo "$kver" >"$out/kver"
  printf '%s %s\n' "$pkg" "$ver" >"$out/source"
  touch "$out/.complete"
  ln -sfn "$out" "$PINLESS_CACHE/kernels/stock.current"
  tb_log "stock kernel ready: $out/vmlinuz ($kver)"
}
