/**
 * ioctl request numbers, include/uapi/asm-generic/ioctl.h (x86/arm64 layout): 8 bits of
 * number, 8 of type, 14 of size, 2 of direction. powerpc differs (13-bit size, 3-bit
 * direction, _IOC_NONE = 1) and is selected where the sPAPR model needs it.
 */
export const _IOC_NONE = 0;
export const _IOC_WRITE = 1;
export const _IOC_READ = 2;

export function _IOC(dir: number, type: string | number, nr: number, size: number): number {
  const t = typeof type === "string" ? type.charCodeAt(0) : type;
  return ((dir << 30) | (size << 16) | (t << 8) | nr) >>> 0;
}
export const _IO = (type: string | number, nr: number) => _IOC(_IOC_NONE, type, nr, 0);
export const _IOR = (type: string | number, nr: number, size: number) =>
  _IOC(_IOC_READ, type, nr, size);
export const _IOW = (type: string | number, nr: number, size: number) =>
  _IOC(_IOC_WRITE, type, nr, size);
export const _IOWR = (type: string | number, nr: number, size: number) =>
  _IOC(_IOC_READ | _IOC_WRITE, type, nr, size);

export const _IOC_NR = (cmd: number) => cmd & 0xff;
export const _IOC_TYPE = (cmd: number) => (cmd >>> 8) & 0xff;
export const _IOC_SIZE = (cmd: number) => (cmd >>> 16) & 0x3fff;
export const _IOC_DIR = (cmd: number) => (cmd >>> 30) & 3;

/*
 * powerpc's layout (arch/powerpc/include/uapi/asm/ioctl.h): 13 bits of size at 16, three
 * direction bits at 29 (NONE = 1, READ = 2, WRITE = 4). So the same request has another
 * number there: _IO(';', 100 + n) is 0x20003b00 + n, KVM_CREATE_SPAPR_TCE_64 0x8020aea8.
 */
const PPC_IOC_NONE = 1;
const PPC_IOC_READ = 2;
const PPC_IOC_WRITE = 4;

/** A request number of the generic layout as a powerpc userspace builds it. */
export function toPowerpc(cmd: number): number {
  const dir = _IOC_DIR(cmd);
  const ppc =
    dir === _IOC_NONE
      ? PPC_IOC_NONE
      : (dir & _IOC_READ ? PPC_IOC_READ : 0) | (dir & _IOC_WRITE ? PPC_IOC_WRITE : 0);
  return ((ppc << 29) | ((_IOC_SIZE(cmd) & 0x1fff) << 16) | (cmd & 0xffff)) >>> 0;
}

/**
 * A number a powerpc process passed, re-encoded in the generic layout the model's request
 * constants use; numbers powerpc's _IOC cannot produce (direction 0, or more than one of
 * NONE/READ|WRITE) come back with a size no request has, so they match nothing.
 */
export function fromPowerpc(cmd: number): number {
  const ppc = (cmd >>> 29) & 7;
  const size = (cmd >>> 16) & 0x1fff;
  if (ppc === 0 || (ppc & PPC_IOC_NONE && ppc !== PPC_IOC_NONE)) return (cmd | 0x3fff0000) >>> 0;
  const dir =
    ppc === PPC_IOC_NONE
      ? _IOC_NONE
      : (ppc & PPC_IOC_READ ? _IOC_READ : 0) | (ppc & PPC_IOC_WRITE ? _IOC_WRITE : 0);
  return _IOC(dir, (cmd >>> 8) & 0xff, cmd & 0xff, size);
}
