/**
 * eventfd (fs/eventfd.c): an 8-byte counter; write adds, read returns and clears it
 * (EAGAIN when zero and non-blocking; the model never blocks, so a read of zero is
 * EAGAIN too). Kernel producers signal it with eventfdSignal (eventfd_signal).
 */
import { err } from "../../uapi/errno.js";
import { File, type FileOperations } from "./file.js";

export interface EventFd {
  count: bigint;
  /** Times the kernel signalled it (for tests and scenarios). */
  signals: number;
}

export const EVENTFD_OPS: FileOperations<EventFd> = {
  name: "anon_inode:[eventfd]",
  positional: false,
  read(file, _task, out) {
    if (out.length < 8) return err("EINVAL");
    if (file.priv.count === 0n) return err("EAGAIN");
    new DataView(out.buffer, out.byteOffset, 8).setBigUint64(0, file.priv.count, true);
    file.priv.count = 0n;
    return 8;
  },
  write(file, _task, data) {
    if (data.length < 8) return err("EINVAL");
    const v = new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0, true);
    if (v === 0xffffffffffffffffn) return err("EINVAL");
    if (file.priv.count + v >= 0xffffffffffffffffn) return err("EAGAIN");
    file.priv.count += v;
    return 8;
  },
};

export function newEventFd(initval: number, flags: number): File<EventFd> {
  return new File(EVENTFD_OPS, { count: BigInt(initval), signals: 0 }, flags);
}

export function isEventFd(f: File): f is File<EventFd> {
  return f.ops === (EVENTFD_OPS as FileOperations<unknown>);
}

export function eventfdSignal(f: File<EventFd>): void {
  f.priv.count += 1n;
  f.priv.signals++;
}
