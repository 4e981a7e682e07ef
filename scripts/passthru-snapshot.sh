#!/bin/sh
# passthru-snapshot.sh - capture this host's PCI/IOMMU state for `passthru analyze`.
#
# Writes a gzip'd tar (format: oracle/SCRIPT.md of the passthru project) holding copies of
# the /sys and /proc files that say how Linux grouped, bound and can reset the PCI
# functions, under their real paths, with symbolic links kept as links. Run it as root:
# without CAP_SYS_ADMIN the kernel returns only the first 64 bytes of each function's
# config space, and the capabilities (PCIe port types, ACS, FLR, SR-IOV) are lost.
#
# Needs only sh, cat, readlink, find, gzip (tar is not even needed: the archive is written
# here, in the GNU tar format, because tar would copy sysfs files at their stat size of 4096
# rather than their real length). Nothing is written except the output file.
#
# Usage: sh passthru-snapshot.sh [-o FILE] [--root DIR]
#   -o FILE     output (default passthru-snapshot.tar.gz; "-" for standard output)
#   --root DIR  read DIR/sys, DIR/proc, DIR/dev instead of /sys, /proc, /dev

set -u
LC_ALL=C
export LC_ALL
out=passthru-snapshot.tar.gz
R=
while [ $# -gt 0 ]; do
	case $1 in
	-o) out=${2:?-o needs a file name}; shift 2 ;;
	--root) R=${2:?--root needs a directory}; R=${R%/}; shift 2 ;;
	-h | --help)
		echo "usage: sh passthru-snapshot.sh [-o FILE|-] [--root DIR]  (capture this host for passthru analyze; run as root)"
		exit 0
		;;
	*) echo "passthru-snapshot: unknown argument '$1' (usage: [-o FILE] [--root DIR])" >&2; exit 2 ;;
	esac
done

# A scratch file to measure binary files (config) with find -size, and one for the counts;
# created exclusively (noclobber: a planted file or link makes the script stop), removed at
# the end with find -delete.
umask 077
SCRATCH=${TMPDIR:-/tmp}/passthru-snapshot.$$
summary=$SCRATCH.summary
trap 'find "$SCRATCH" "$summary" -type f -delete 2>/dev/null' EXIT
trap 'exit 1' INT TERM HUP
set -C
if ! { : >"$SCRATCH" && : >"$summary"; } 2>/dev/null; then
	echo "passthru-snapshot: cannot create $SCRATCH (set TMPDIR to a writable directory)" >&2
	exit 1
fi
set +C

Z64='\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'
Q100='????????????????????????????????????????????????????????????????????????????????????????????????????'

# zeros N: N NUL bytes
zeros() {
	_z=$1
	while [ "$_z" -ge 64 ]; do printf "$Z64"; _z=$((_z - 64)); done
	while [ "$_z" -gt 0 ]; do printf '\0'; _z=$((_z - 1)); done
}

# strsum S: sets SUM to the sum of the byte values of S
strsum() {
	_s=$1
	SUM=0
	while [ -n "$_s" ]; do
		_c=${_s%"${_s#?}"}
		_s=${_s#?}
		case $_c in
		/) _v=47 ;; .) _v=46 ;; :) _v=58 ;; _) _v=95 ;; -) _v=45 ;;
		0) _v=48 ;; 1) _v=49 ;; 2) _v=50 ;; 3) _v=51 ;; 4) _v=52 ;;
		5) _v=53 ;; 6) _v=54 ;; 7) _v=55 ;; 8) _v=56 ;; 9) _v=57 ;;
		a) _v=97 ;; b) _v=98 ;; c) _v=99 ;; d) _v=100 ;; e) _v=101 ;; f) _v=102 ;;
		g) _v=103 ;; h) _v=104 ;; i) _v=105 ;; j) _v=106 ;; k) _v=107 ;; l) _v=108 ;;
		m) _v=109 ;; n) _v=110 ;; o) _v=111 ;; p) _v=112 ;; q) _v=113 ;; r) _v=114 ;;
		s) _v=115 ;; t) _v=116 ;; u) _v=117 ;; v) _v=118 ;; w) _v=119 ;; x) _v=120 ;;
		y) _v=121 ;; z) _v=122 ;;
		*) _v=$(printf '%d' "'$_c") ;;
		esac
		SUM=$((SUM + _v))
	done
}

# octsum N W: sets SUM to the byte sum of N written as W octal digits
octsum() {
	_x=$1 _w=$2 SUM=0
	while [ "$_w" -gt 0 ]; do
		SUM=$((SUM + 48 + _x % 8))
		_x=$((_x / 8))
		_w=$((_w - 1))
	done
}

# header NAME TYPE MODE SIZE LINK: one 512-byte GNU tar header (and 'L'/'K' records for
# names or link targets longer than 100 bytes), as oracle/agent/snapshot.c writes them
header() {
	_n=$1 _t=$2 _m=$3 _sz=$4 _l=$5
	# (header is called again for the records: its variables are global, so re-read $1..$5)
	if [ ${#_n} -gt 100 ]; then
		header ././@LongLink L 420 $((${#1} + 1)) ""
		printf '%s\0' "$1"
		zeros $(((512 - (${#1} + 1) % 512) % 512))
	fi
	if [ ${#5} -gt 100 ]; then
		header ././@LongLink K 420 $((${#5} + 1)) ""
		printf '%s\0' "$5"
		zeros $(((512 - (${#5} + 1) % 512) % 512))
	fi
	_n=$1 _t=$2 _m=$3 _sz=$4 _l=$5
	[ ${#_n} -gt 100 ] && _n=${_n%"${_n#$Q100}"}
	[ ${#_l} -gt 100 ] && _l=${_l%"${_l#$Q100}"}
	strsum "$_n"; _sum=$SUM
	strsum "$_l"; _sum=$((_sum + SUM))
	octsum "$_m" 7; _sum=$((_sum + SUM))
	octsum "$_sz" 11; _sum=$((_sum + SUM))
	strsum "$_t"; _sum=$((_sum + SUM))
	# uid, gid (7 zeros each), mtime (11 zeros), checksum field as spaces, "ustar  ", root, root
	_sum=$((_sum + 336 + 336 + 528 + 256 + 623 + 452 + 452))
	printf '%s' "$_n"; zeros $((100 - ${#_n}))
	printf '%07o\0' "$_m"
	printf '0000000\0'
	printf '0000000\0'
	printf '%011o\0' "$_sz"
	printf '00000000000\0'
	printf '%06o\0 ' "$_sum"
	printf '%s' "$_t"
	printf '%s' "$_l"; zeros $((100 - ${#_l}))
	printf 'ustar  \0'
	printf 'root'; zeros 28
	printf 'root'; zeros 28
	zeros 183
}

DIRS='|'
# dir REL: a directory entry, parents first, once
dir() {
	case $DIRS in *"|$1|"*) return ;; esac
	case $1 in */*) dir "${1%/*}" ;; esac
	DIRS="$DIRS$1|"
	header "$1/" 5 493 0 ""
}
parent() { case $1 in */*) dir "${1%/*}" ;; esac; }

# text REL: a small text file, read to its end; skipped when unreadable
text() {
	[ -f "$R/$1" ] && [ ! -L "$R/$1" ] || return 0
	_d=$(cat "$R/$1" 2>/dev/null && echo x) || return 0
	[ -n "$_d" ] || return 0
	_d=${_d%x}
	data "$1" "$_d"
}
# data REL CONTENT: a file entry with this content
data() {
	parent "$1"
	header "$1" 0 420 ${#2} ""
	printf '%s' "$2"
	zeros $(((512 - ${#2} % 512) % 512))
}

# size FILE: sets SIZE to the byte length of a regular file (find -size, no wc needed)
size() {
	for SIZE in 4096 256 64 128 0; do
		[ -n "$(find "$1" -prune -size ${SIZE}c)" ] && return 0
	done
	_lo=0 _hi=1048577
	while [ $((_hi - _lo)) -gt 1 ]; do
		_mid=$(((_lo + _hi) / 2))
		if [ -n "$(find "$1" -prune -size -${_mid}c)" ]; then _hi=$_mid; else _lo=$_mid; fi
	done
	SIZE=$_lo
}

TRUNCATED=0
FUNCTIONS=0
# binary REL: a file copied byte for byte (config)
binary() {
	[ -f "$R/$1" ] && [ ! -L "$R/$1" ] || return 0
	cat "$R/$1" >"$SCRATCH" 2>/dev/null || return 0
	size "$SCRATCH"
	case $1 in */config) [ "$SIZE" -lt 256 ] && TRUNCATED=$((TRUNCATED + 1)) ;; esac
	parent "$1"
	header "$1" 0 420 "$SIZE" ""
	cat "$SCRATCH"
	zeros $(((512 - SIZE % 512) % 512))
}

# link REL: a symbolic link with its target text
link() {
	[ -L "$R/$1" ] || return 0
	_t=$(readlink "$R/$1") || return 0
	parent "$1"
	header "$1" 2 511 0 "$_t"
}

# path REL: a file or a link, whichever it is
path() {
	if [ -L "$R/$1" ]; then link "$1"; elif [ -f "$R/$1" ]; then text "$1"; fi
}

# marker REL: an empty file saying a device node exists
marker() { data "$1" ""; }

is_bdf() {
	case $1 in
	[0-9a-f][0-9a-f][0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f].[0-7]) return 0 ;;
	[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f].[0-7]) return 0 ;;
	esac
	return 1
}
is_domain() {
	case $1 in
	pci[0-9a-f][0-9a-f][0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]) return 0 ;;
	pci[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]) return 0 ;;
	esac
	return 1
}

# walk REL FUNCTION: a PCI function's files, then the functions (and VMD domains) below it
walk() {
	dir "$1"
	if [ "$2" = 1 ]; then
		FUNCTIONS=$((FUNCTIONS + 1))
		binary "$1/config"
		for f in vendor device subsystem_vendor subsystem_device class revision resource irq \
			numa_node reset_method driver_override enable msi_bus sriov_totalvfs sriov_numvfs; do
			path "$1/$f"
		done
		for f in driver iommu_group iommu physfn; do link "$1/$f"; done
	fi
	for e in "$R/$1"/*; do
		n=${e##*/}
		case $n in
		virtfn*) link "$1/$n" ;;
		*)
			if [ -d "$e" ] && [ ! -L "$e" ]; then
				if is_bdf "$n"; then walk "$1/$n" 1; elif is_domain "$n"; then walk "$1/$n" 0; fi
			fi
			;;
		esac
	done
}

# resolve DIR TARGET: sets RES to DIR/TARGET with . and .. removed
resolve() {
	case $2 in /*) _p=$2 ;; *) _p=$1/$2 ;; esac
	RES=
	_ifs=$IFS
	IFS=/
	set -f
	for _c in $_p; do
		case $_c in
		'' | .) ;;
		..) RES=${RES%/*} ;;
		*) RES=$RES/$_c ;;
		esac
	done
	set +f
	IFS=$_ifs
	RES=${RES#/}
}

capture() {
	for e in "$R"/sys/devices/pci*; do
		[ -d "$e" ] && walk "sys/devices/${e##*/}" 0
	done
	dir sys/bus/pci/devices
	for e in "$R"/sys/bus/pci/devices/*; do [ -L "$e" ] && link "sys/bus/pci/devices/${e##*/}"; done
	dir sys/bus/pci/drivers
	for e in "$R"/sys/bus/pci/drivers/*; do [ -d "$e" ] && dir "sys/bus/pci/drivers/${e##*/}"; done
	for e in "$R"/sys/bus/pci/slots/*; do [ -d "$e" ] && path "sys/bus/pci/slots/${e##*/}/address"; done

	dir sys/kernel/iommu_groups
	for e in "$R"/sys/kernel/iommu_groups/*; do
		[ -d "$e" ] || continue
		g=sys/kernel/iommu_groups/${e##*/}
		path "$g/type"
		path "$g/reserved_regions"
		dir "$g/devices"
		for m in "$e"/devices/*; do [ -L "$m" ] && link "$g/devices/${m##*/}"; done
	done

	dir sys/class/iommu
	for e in "$R"/sys/class/iommu/*; do
		[ -L "$e" ] || continue
		u=sys/class/iommu/${e##*/}
		link "$u"
		resolve sys/class/iommu "$(readlink "$e")"
		[ -d "$R/$RES" ] || continue
		dir "$RES"
		for f in intel-iommu/cap intel-iommu/ecap intel-iommu/version intel-iommu/address \
			amd-iommu/cap amd-iommu/features; do
			path "$RES/$f"
		done
	done

	for m in vfio vfio_pci vfio_pci_core vfio_iommu_type1 kvm kvm_intel kvm_amd iommufd; do
		for e in "$R"/sys/module/$m/parameters/*; do
			[ -f "$e" ] && text "sys/module/$m/parameters/${e##*/}"
		done
	done

	text proc/cmdline
	text proc/sys/kernel/osrelease
	if [ -f "$R/proc/cpuinfo" ]; then
		cpu=
		nl='
'
		while IFS= read -r line; do
			[ -z "$line" ] && break
			cpu=$cpu$line$nl
		done <"$R/proc/cpuinfo"
		[ -n "$cpu" ] && data proc/cpuinfo "$cpu"
	fi

	if [ -d "$R/dev/vfio" ]; then
		dir dev/vfio
		for e in "$R"/dev/vfio/*; do
			[ -e "$e" ] || continue
			if [ -d "$e" ]; then
				dir "dev/vfio/${e##*/}"
				for d in "$e"/*; do [ -e "$d" ] && marker "dev/vfio/${e##*/}/${d##*/}"; done
			else
				marker "dev/vfio/${e##*/}"
			fi
		done
	fi
	[ -e "$R/dev/iommu" ] && marker dev/iommu
	[ -e "$R/dev/kvm" ] && marker dev/kvm
	zeros 1024
	# Counts for the summary, on a descriptor the archive does not use.
	echo "$FUNCTIONS $TRUNCATED" >&3
}

if [ ! -d "$R/sys/devices" ]; then
	echo "passthru-snapshot: $R/sys/devices: no such directory (is /sys mounted?)" >&2
	exit 1
fi
if [ "$out" = - ]; then
	capture 3>"$summary" | gzip -9 -n
else
	capture 3>"$summary" | gzip -9 -n >"$out" || exit 1
fi
read -r functions truncated <"$summary"
if [ "$out" != - ]; then
	echo "passthru-snapshot: wrote $out ($functions PCI functions)" >&2
fi
if [ "${truncated:-0}" -gt 0 ]; then
	echo "passthru-snapshot: not captured as root: $truncated of $functions config files hold only the first 64 bytes" \
		"(the kernel gives the rest only to CAP_SYS_ADMIN). Missing: capabilities - PCIe port types, ACS, FLR and PM" \
		"reset bits, SR-IOV. Groups, drivers, reset_method and IOMMU registers are complete." >&2
fi
if [ "${functions:-0}" -eq 0 ]; then
	echo "passthru-snapshot: no PCI functions found" >&2
	exit 1
fi
