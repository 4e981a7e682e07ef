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
