# shellcheck shell=bash
# Shared steps of the kernel glue: pinned packages, bindgen, the patched and
# configured Linux tree (built once, cached outside the repository).
# Sourced by qemu-test.sh; every function is idempotent.

GLUE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${FOLDSWAP_KERNEL_CACHE:-/var/cache/foldswap-kernel}
JOBS=${JOBS:-$(nproc)}

# Pinned versions (checked on Debian 12; why these: kernel-glue/README.md).
LINUX_PKG=linux-source-6.12
LINUX_VER=6.12.117-1~deb12u1
RUSTC_VER=1.96.0+dfsg1-1~deb12u2
RUST_LIB_SRC=/usr/src/rustc-1.96.0/library
BINDGEN_VER=0.70.1
BINDGEN_DIR=$CACHE_DIR/bindgen-$BINDGEN_VER
BINDGEN=$BINDGEN_DIR/bin/bindgen

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

install_packages() {
	local want=("$LINUX_PKG=$LINUX_VER" "rustc-web=$RUSTC_VER" "rust-web-src=$RUSTC_VER"
		clang lld llvm libclang-dev bc flex bison libelf-dev libssl-dev cpio
		qemu-system-x86 busybox-static xz-utils rsync libnuma-dev)
	if [ "$(dpkg-query -W -f='${Version}' "$LINUX_PKG" 2>/dev/null)" = "$LINUX_VER" ] &&
		[ "$(dpkg-query -W -f='${Version}' rust-web-src 2>/dev/null)" = "$RUSTC_VER" ] &&
		[ "$(dpkg-query -W -f='${Version}' rustc-web 2>/dev/null)" = "$RUSTC_VER" ] &&
		command -v qemu-system-x86_64 >/dev/null && [ -x /bin/busybox ] &&
		command -v ld.lld >/dev/null && command -v clang >/dev/null &&
		command -v rsync >/dev/null && [ -e /usr/include/numa.h ]; then
		return 0
	fi
	log "installing pinned packages"
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null
}

install_bindgen() {
	[ -x "$BINDGEN" ] && return 0
	log "installing bindgen-cli $BINDGEN_VER (~3.5 min)"
	mkdir -p "$CACHE_DIR"
	CARGO_TARGET_DIR=$CACHE_DIR/bindgen-build cargo install -q bindgen-cli \
		--version "$BINDGEN_VER" --locked --root "$BINDGEN_DIR"
	rm -rf "$CACHE_DIR/bindgen-build"
}

# Everything that decides the kernel's bytes goes into the cache key.
kernel_key() {
	{
		echo "recipe 1"
		dpkg-query -W -f='${Package} ${Version}\n' "$LINUX_PKG" rustc-web rust-web-src clang lld llvm
		"$BINDGEN" --version
		cat "$GLUE_DIR/kernel.config" "$GLUE_DIR"/patch/*.patch
		declare -f kernel_configure kernel_build_tree
	} | sha256sum | cut -c1-16
}

kmake() {
	make -s -C "$KSRC" LLVM=1 RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc \
		RUSTDOC=/usr/bin/rustdoc BINDGEN="$BINDGEN" RUST_LIB_SRC="$RUST_LIB_SRC" "$@"
}

kernel_configure() {
	local opt pass
	kmake tinyconfig >/dev/null
	# Twice: options like SMP or SWAP only appear once 64BIT is on.
	for pass in 1 2; do
		while read -r opt; do
			case "$opt" in
			'' | '#'*) ;;
			*=n) "$KSRC/scripts/config" --file "$KSRC/.config" --disable "${opt%=n}" ;;
			*=*) "$KSRC/scripts/config" --file "$KSRC/.config" --set-val "${opt%%=*}" "${opt#*=}" ;;
			*) "$KSRC/scripts/config" --file "$KSRC/.config" --enable "$opt" ;;
			esac
		done <"$GLUE_DIR/kernel.config"
		kmake olddefconfig >/dev/null
	done
	grep -q '^CONFIG_RUST=y' "$KSRC/.config" || die "CONFIG_RUST did not survive olddefconfig"
	grep -q '^CONFIG_RUSTC_VERSION=109600' "$KSRC/.config" || die "kernel did not pick Debian's rustc 1.96"
	# What the guest tests rely on (an option whose dependencies are missing
	# is dropped silently by olddefconfig).
	for opt in ZSWAP TRANSPARENT_HUGEPAGE ADVISE_SYSCALLS PROC_PAGE_MONITOR BLK_DEV_RAM \
		PREEMPT_NONE PREEMPT_DYNAMIC CGROUPS MEMCG MULTIUSER; do
		grep -q "^CONFIG_$opt=y" "$KSRC/.config" || die "CONFIG_$opt missing"
	done
}

kernel_build_tree() {
	local tmp=$1
	mkdir -p "$tmp"
	tar -C "$tmp" -xf "/usr/src/$LINUX_PKG.tar.xz"
	KSRC=$tmp/$LINUX_PKG
	local p
	for p in "$GLUE_DIR"/patch/*.patch; do
		patch -s -p1 -d "$KSRC" <"$p"
	done
	kmake rustavailable | grep -q 'Rust is available' || die "rustavailable failed"
	kernel_configure
	kmake -j"$JOBS" bzImage modules_prepare
}

# Sets KSRC to a built, patched kernel tree; builds it if the cache lacks it.
kernel_tree() {
	local key dir
	key=$(kernel_key)
	dir=$CACHE_DIR/linux-$key
	KSRC=$dir/$LINUX_PKG
	mkdir -p "$CACHE_DIR"
	exec 9>"$CACHE_DIR/.lock-$key"
	flock 9
	if [ -f "$dir/.built" ]; then
		log "kernel tree from cache: $dir"
	else
		# Built in place: a kernel tree must not move after building
		# (its .cmd files hold absolute paths).
		log "building kernel $key (unpack, patch, config, bzImage: ~15 min)"
		rm -rf "$dir"
		kernel_build_tree "$dir"
		touch "$dir/.built"
	fi
	flock -u 9
}
