/**
 * IOMMU_FAULT_QUEUE_ALLOC, drivers/iommu/iommufd/fault.c (Linux 6.12): a FAULT object and
 * the file userspace reads I/O page faults from and writes responses to. The model's IOMMUs
 * deliver no page requests (no PRI), so a read finds nothing (0 bytes) and a response
 * names no pending group (EINVAL); the sizes and positions are checked as the kernel does
 * (ESPIPE), and the file holds the object and its context until it is closed.
 */
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/iommufd.js";
import { O_RDWR } from "../../uapi/syscalls.js";
import { File, type FileOperations } from "../core/file.js";
import type { IommufdCtx, IommufdObject, Ucmd } from "./main.js";

/** sizeof(struct iommu_hwpt_pgfault), sizeof(struct iommu_hwpt_page_response) */
const FAULT_SIZE = 48;
const RESPONSE_SIZE = 8;
const IOMMUFD_PAGE_RESP_SUCCESS = 0;
const IOMMUFD_PAGE_RESP_INVALID = 1;

/** struct iommufd_fault */
export class IommufdFault implements IommufdObject {
  readonly type = "fault";
  id = 0;
  users = 1;
  constructor(readonly ctx: IommufdCtx) {}
  /** iommufd_fault_destroy(): nothing is pending in the model. */
  destroy(): void {}
}

const FAULT_FOPS: FileOperations<IommufdFault> = {
  name: "anon_inode:[iommufd-pgfault]",
  positional: false,
  read(_file, _task, out, pos) {
    if (pos || out.length % FAULT_SIZE) return err("ESPIPE");
    return 0;
  },
  write(_file, _task, data, pos) {
    if (pos || data.length % RESPONSE_SIZE) return err("ESPIPE");
    if (!data.length) return 0;
    const code = new DataView(data.buffer, data.byteOffset).getUint32(4, true);
    if (code !== IOMMUFD_PAGE_RESP_SUCCESS && code !== IOMMUFD_PAGE_RESP_INVALID)
      return err("EINVAL");
    return err("EINVAL"); // no group with that cookie
  },
  release(file) {
    file.priv.users--;
    file.priv.ctx.put();
  },
};

/** iommufd_fault_alloc() */
export function iommufdFaultAlloc(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_fault_alloc);
  const ctx = ucmd.ctx;
  if (cmd.flags) return err("EOPNOTSUPP");
  const fault = new IommufdFault(ctx);
  let rc = ctx.alloc(ucmd.task, fault, "iommufd_fault");
  if (rc) return rc;
  if (ucmd.task.faults.should("slab", "anon_inode_file")) {
    ctx.abortAndDestroy(fault);
    return err("ENOMEM");
  }
  const file = new File(FAULT_FOPS, fault, O_RDWR);
  fault.users++;
  ctx.get();
  const fd = ucmd.task.files.install(file);
  if (fd < 0) {
    // fput() of the new file drops what it held (the install put it already).
    ctx.abortAndDestroy(fault);
    return fd;
  }
  cmd.out_fault_id = fault.id;
  cmd.out_fault_fd = fd;
  rc = ucmd.respond(U.iommu_fault_alloc.encode(cmd));
  if (rc) {
    ucmd.task.files.close(fd);
    ctx.abortAndDestroy(fault);
    return rc;
  }
  ctx.finalize(fault);
  return 0;
}
