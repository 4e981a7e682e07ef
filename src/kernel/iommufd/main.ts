/**
 * iommufd, drivers/iommu/iommufd/main.c (Linux 6.12.117): the /dev/iommu character device
 * (and, with CONFIG_IOMMUFD_VFIO_CONTAINER, /dev/vfio/vfio, whose contexts charge pinned
 * memory VFIO's way), one context per open, the object table, the ioctl dispatch table with
 * the extensible-struct rules, IOMMU_DESTROY and IOMMU_OPTION's RLIMIT_MODE.
 *
 * Objects live in an ID table (xa_alloc: the lowest free id from 1). An id is reserved when
 * an object is allocated and published only once it can no longer fail (finalize), so a
 * half-built object is never found. `users` counts references: the table's own, one per
 * object or driver depending on it, and a transient one while an ioctl uses it; DESTROY
 * succeeds only when the table's is the last (EBUSY otherwise), and closing the file
 * destroys leaves first until the table is empty.
 *
 * Request numbers below IOMMUFD_CMD_BASE or past the table go to the VFIO compatibility
 * ioctls (vfio_compat.ts). With CONFIG_IOMMUFD_TEST the table reaches IOMMU_TEST_CMD
 * (IOMMUFD_CMD_BASE + 32, the mock platform of selftest.ts) and the slots between are
 * empty, so those requests are ENOTTY once their size word was read. A request whose number matches a slot but not the slot's
 * ioctl_num is ENOTTY. Otherwise `size` is read first (EFAULT), a size below the last
 * mandatory field is EINVAL, and copy_struct_from_user() zero-extends a short struct and
 * refuses a longer one with a non-zero tail (E2BIG).
 */
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/iommufd.js";
import type { StructCodec, FieldType } from "../../uapi/struct.js";
import { File, type FileOperations } from "../core/file.js";
import type { Task } from "../core/task.js";
import type { CharDev } from "../core/vfs.js";
import type { IommuSubsystem } from "../iommu/iommu.js";
import { iommufdGetHwInfo, type IommufdDevice, type IommufdGroup } from "./device.js";
import {
  iommufdHwptAlloc,
  iommufdHwptGetDirtyBitmap,
  iommufdHwptInvalidate,
  iommufdHwptSetDirtyTracking,
} from "./hw_pagetable.js";
import { iommufdFaultAlloc } from "./fault.js";
import {
  iommufdIoasAlloc,
  iommufdIoasAllowIovas,
  iommufdIoasCopy,
  iommufdIoasIovaRanges,
  iommufdIoasMap,
  iommufdIoasOption,
  iommufdIoasUnmap,
  type Ioas,
} from "./ioas.js";
import { UserLockedVm, type AccountMode } from "./pages.js";
import { iommufdVfioIoas, iommufdVfioIoctl } from "./vfio_compat.js";
import { iommufdTest, MockIommu } from "./selftest.js";

export type IommufdObjType =
  "device" | "hwpt_paging" | "hwpt_nested" | "ioas" | "access" | "fault" | "selftest";

/** struct iommufd_object with its iommufd_object_ops. */
export interface IommufdObject {
  readonly type: IommufdObjType;
  id: number;
  /** refcount users: the table's reference, dependants' and transient ones. */
  users: number;
  destroy(): void;
  /** Undo of a fully initialised but unpublished object; destroy when absent. */
  abort?(): void;
}

/** The build options iommufd follows (drivers/iommu/iommufd/Kconfig and neighbours). */
export interface IommufdConfig {
  /** CONFIG_TRANSPARENT_HUGEPAGE: automatic IOVA keeps up to HPAGE_SIZE of alignment. */
  thp: boolean;
  /** CONFIG_IOMMUFD_VFIO_CONTAINER: iommufd serves /dev/vfio/vfio. */
  vfioContainer: boolean;
  /** CONFIG_VFIO_NOIOMMU, as the compat layer's CHECK_EXTENSION reports it. */
  vfioNoiommu: boolean;
  /** The iommufd.allow_unsafe_interrupts module parameter. */
  allowUnsafeInterrupts: boolean;
  /** CONFIG_IOMMUFD_TEST: the selftest's mock platform and IOMMU_TEST_CMD. */
  test?: boolean;
}

const XA_LIMIT_31B = 0x7fffffff;

/** struct iommufd_ucmd: the copied-in command and where to answer. */
export class Ucmd {
  constructor(
    readonly ctx: IommufdCtx,
    readonly task: Task,
    readonly ubuffer: bigint,
    readonly userSize: number,
    readonly cmd: Uint8Array,
  ) {}

  decode<F extends readonly (readonly [string, FieldType])[]>(c: StructCodec<F>) {
    return c.decode(this.cmd);
  }

  /** iommufd_ucmd_respond(): the first min(user size, struct size) bytes go back. */
  respond(bytes: Uint8Array): number {
    const n = Math.min(this.userSize, bytes.length);
    return this.task.mm.copyToUser(this.ubuffer, bytes.subarray(0, n)) ? 0 : err("EFAULT");
  }
}

/** struct iommufd_ctx */
export class IommufdCtx {
  /** id → object; null while reserved but unpublished (XA_ZERO_ENTRY). */
  readonly objects = new Map<number, IommufdObject | null>();
  /** iommu group id → iommufd_group. */
  readonly groups = new Map<number, IommufdGroup>();
  noIommuMode = false;
  vfioIoas: Ioas | null = null;
  file!: File<IommufdCtx>;

  constructor(
    readonly sys: IommufdSubsystem,
    public accountMode: AccountMode,
  ) {}

  /** iommufd_ctx_get(): the context lives as long as its file. */
  get(): void {
    this.file.get();
  }
  /** iommufd_ctx_put() */
  put(): void {
    this.file.put();
  }

  /** _iommufd_object_alloc(): reserve the lowest free id; -errno on failure. */
  alloc(task: Task | null, obj: IommufdObject, what: string): number {
    if (task?.faults.should("slab", what)) return err("ENOMEM");
    let id = 1;
    while (this.objects.has(id)) id++;
    if (id > XA_LIMIT_31B) return err("EBUSY");
    obj.id = id;
    obj.users = 1;
    this.objects.set(id, null);
    return 0;
  }

  /** iommufd_object_finalize() */
  finalize(obj: IommufdObject): void {
    this.objects.set(obj.id, obj);
  }

  /** iommufd_object_abort() */
  abort(obj: IommufdObject): void {
    this.objects.delete(obj.id);
  }

  /** iommufd_object_abort_and_destroy() */
  abortAndDestroy(obj: IommufdObject): void {
    if (obj.abort) obj.abort();
    else obj.destroy();
    this.abort(obj);
  }

  /** iommufd_get_object(): a reference, or ENOENT (absent, unpublished or another type). */
  getObject(id: number, type?: IommufdObjType): IommufdObject | number {
    const obj = this.objects.get(id);
    if (!obj || (type !== undefined && obj.type !== type)) return err("ENOENT");
    obj.users++;
    return obj;
  }

  /** iommufd_put_object() */
  putObject(obj: IommufdObject): void {
    obj.users--;
  }

  /**
   * iommufd_object_remove(): take the id out of the table when only the table holds the
   * object. `toDestroy` is an object whose reference the caller gives up here.
   */
  remove(toDestroy: IommufdObject | null, id: number): number {
    const obj = this.objects.get(id);
    if (toDestroy) {
      toDestroy.users--;
      if (obj !== toDestroy) return err("ENOENT");
    } else if (!obj) {
      return err("ENOENT");
    }
    const o = obj as IommufdObject;
    if (o.users !== 1) return err("EBUSY");
    o.users = 0;
    this.objects.delete(id);
    if (this.vfioIoas === (o as unknown)) this.vfioIoas = null;
    o.destroy();
    return 0;
  }

  /** iommufd_fops_release(): destroy leaves until nothing is left. */
  releaseAll(): void {
    while (this.objects.size) {
      let destroyed = 0;
      for (const id of [...this.objects.keys()].sort((a, b) => a - b)) {
        const obj = this.objects.get(id);
        if (!obj || obj.users !== 1) continue;
        obj.users = 0;
        this.objects.delete(id);
        obj.destroy();
        destroyed++;
      }
      if (!destroyed) break; // a refcounting bug: the kernel WARNs and leaks
    }
  }
}

interface IoctlOp {
  size: number;
  minSize: number;
  ioctlNum: number;
  execute(ucmd: Ucmd): number;
}

/** IOCTL_OP(): size is sizeof(struct), min_size offsetofend(struct, last). */
function op<F extends readonly (readonly [string, FieldType])[]>(
  ioctlNum: number,
  execute: (ucmd: Ucmd) => number,
  codec: StructCodec<F>,
  last: F[number][0],
): IoctlOp {
  return { size: codec.size, minSize: codec.end(last), ioctlNum, execute };
}

/** iommufd_ioctl_ops[], indexed by _IOC_NR(cmd) - IOMMUFD_CMD_BASE. */
const IOCTL_OPS: IoctlOp[] = [
  op(U.IOMMU_DESTROY, (u) => iommufdDestroy(u), U.iommu_destroy, "id"),
  op(U.IOMMU_IOAS_ALLOC, iommufdIoasAlloc, U.iommu_ioas_alloc, "out_ioas_id"),
  op(U.IOMMU_IOAS_ALLOW_IOVAS, iommufdIoasAllowIovas, U.iommu_ioas_allow_iovas, "allowed_iovas"),
  op(U.IOMMU_IOAS_COPY, iommufdIoasCopy, U.iommu_ioas_copy, "src_iova"),
  op(
    U.IOMMU_IOAS_IOVA_RANGES,
    iommufdIoasIovaRanges,
    U.iommu_ioas_iova_ranges,
    "out_iova_alignment",
  ),
  op(U.IOMMU_IOAS_MAP, iommufdIoasMap, U.iommu_ioas_map, "iova"),
  op(U.IOMMU_IOAS_UNMAP, iommufdIoasUnmap, U.iommu_ioas_unmap, "length"),
  op(U.IOMMU_OPTION, (u) => iommufdOption(u), U.iommu_option, "val64"),
  op(U.IOMMU_VFIO_IOAS, iommufdVfioIoas, U.iommu_vfio_ioas, "__reserved"),
  op(U.IOMMU_HWPT_ALLOC, iommufdHwptAlloc, U.iommu_hwpt_alloc, "__reserved"),
  op(U.IOMMU_GET_HW_INFO, iommufdGetHwInfo, U.iommu_hw_info, "__reserved2"),
  op(
    U.IOMMU_HWPT_SET_DIRTY_TRACKING,
    iommufdHwptSetDirtyTracking,
    U.iommu_hwpt_set_dirty_tracking,
    "__reserved",
  ),
  op(
    U.IOMMU_HWPT_GET_DIRTY_BITMAP,
    iommufdHwptGetDirtyBitmap,
    U.iommu_hwpt_get_dirty_bitmap,
    "data",
  ),
  op(U.IOMMU_HWPT_INVALIDATE, iommufdHwptInvalidate, U.iommu_hwpt_invalidate, "__reserved"),
  op(U.IOMMU_FAULT_QUEUE_ALLOC, iommufdFaultAlloc, U.iommu_fault_alloc, "out_fault_fd"),
];

/** The table of a CONFIG_IOMMUFD_TEST kernel: empty slots up to IOMMU_TEST_CMD. */
const IOCTL_OPS_TEST: IoctlOp[] = [
  ...IOCTL_OPS,
  ...Array.from({ length: 32 - IOCTL_OPS.length }, () => ({
    size: 0,
    minSize: 0,
    ioctlNum: 0,
    execute: () => err("ENOTTY"),
  })),
  op(U.IOMMU_TEST_CMD, iommufdTest, U.iommu_test_cmd, "last"),
];

/** iommufd_destroy() */
function iommufdDestroy(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_destroy);
  return ucmd.ctx.remove(null, cmd.id);
}

/** iommufd_option_rlimit_mode() */
function optionRlimitMode(
  cmd: ReturnType<typeof U.iommu_option.decode>,
  ctx: IommufdCtx,
  task: Task,
): number {
  if (cmd.object_id) return err("EOPNOTSUPP");
  if (cmd.op === U.IOMMU_OPTION_OP_GET) {
    cmd.val64 = ctx.accountMode === "mm" ? 1n : 0n;
    return 0;
  }
  if (cmd.op === U.IOMMU_OPTION_OP_SET) {
    if (!task.capable("CAP_SYS_RESOURCE")) return err("EPERM");
    if (ctx.objects.size) return err("EBUSY");
    if (cmd.val64 === 0n) ctx.accountMode = "user";
    else if (cmd.val64 === 1n) ctx.accountMode = "mm";
    else return err("EINVAL");
    return 0;
  }
  return err("EOPNOTSUPP");
}

/** iommufd_option(): the value goes back to val64 on success. */
function iommufdOption(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_option);
  if (cmd.__reserved) return err("EOPNOTSUPP");
  let rc: number;
  switch (cmd.option_id) {
    case U.IOMMU_OPTION_RLIMIT_MODE:
      rc = optionRlimitMode(cmd, ucmd.ctx, ucmd.task);
      break;
    case U.IOMMU_OPTION_HUGE_PAGES:
      rc = iommufdIoasOption(ucmd, cmd);
      break;
    default:
      return err("EOPNOTSUPP");
  }
  if (rc) return rc;
  const v = new Uint8Array(8);
  new DataView(v.buffer).setBigUint64(0, cmd.val64, true);
  const at = ucmd.ubuffer + BigInt(U.iommu_option.offsets.val64 as number);
  return ucmd.task.mm.copyToUser(at, v) ? 0 : err("EFAULT");
}

/**
 * copy_struct_from_user(): the user's struct into a kernel one of `ksize` bytes; a
 * non-zero byte past what the kernel knows is E2BIG.
 */
export function copyStructFromUser(
  task: Task,
  ksize: number,
  src: bigint,
  usize: number,
): Uint8Array | number {
  const out = new Uint8Array(ksize);
  if (usize > ksize) {
    const tail = task.mm.copyFromUser(src + BigInt(ksize), usize - ksize);
    if (!tail) return err("EFAULT");
    if (tail.some((b) => b !== 0)) return err("E2BIG");
  }
  const n = Math.min(ksize, usize);
  const head = task.mm.copyFromUser(src, n);
  if (!head) return err("EFAULT");
  out.set(head);
  return out;
}

/** The iommufd "module": its two misc devices and the state it shares across contexts. */
export class IommufdSubsystem {
  /** Per-user locked_vm (struct user_struct), charged in IOPT_PAGES_ACCOUNT_USER mode. */
  readonly userLockedVm = new UserLockedVm();
  /** Contexts whose file is still open, for leak checks. */
  readonly contexts = new Set<IommufdCtx>();
  readonly fops: FileOperations<IommufdCtx>;
  /** The same file operations, for files opened as /dev/vfio/vfio. */
  private readonly vfioFops: FileOperations<IommufdCtx>;
  /** /dev/iommu */
  readonly iommuMisc: CharDev;
  /** /dev/vfio/vfio when CONFIG_IOMMUFD_VFIO_CONTAINER. */
  readonly vfioMisc: CharDev | null;
  /** The automatic-IOVA alignment cap (HPAGE_SIZE with THP, else PAGE_SIZE). */
  readonly maxIovaAlignment: bigint;
  /** The mock IOMMU and bus of CONFIG_IOMMUFD_TEST. */
  readonly selftest: MockIommu | null;
  private readonly ioctlOps: IoctlOp[];

  constructor(
    readonly iommu: IommuSubsystem,
    readonly config: IommufdConfig,
  ) {
    this.maxIovaAlignment = config.thp ? 1n << 21n : 1n << 12n;
    this.selftest = config.test ? new MockIommu() : null;
    this.ioctlOps = config.test ? IOCTL_OPS_TEST : IOCTL_OPS;
    this.fops = {
      name: "/dev/iommu",
      ioctl: (file, task, cmd, arg) => this.ioctl(file.priv, task, cmd, arg),
      release: (file) => {
        file.priv.releaseAll();
        this.contexts.delete(file.priv);
      },
    };
    this.vfioFops = { ...this.fops, name: "/dev/vfio/vfio" };
    this.iommuMisc = { open: (task, flags) => this.open(task, flags, "user", this.fops) };
    // iommufd_fops_open(): "IOMMUFD is providing /dev/vfio/vfio, not VFIO."
    this.vfioMisc = config.vfioContainer
      ? { open: (task, flags) => this.open(task, flags, "mm", this.vfioFops) }
      : null;
  }

  /** iommufd_fops_open() */
  private open(
    task: Task,
    flags: number,
    mode: AccountMode,
    fops: FileOperations<IommufdCtx>,
  ): File<IommufdCtx> | number {
    if (task.faults.should("slab", "iommufd_ctx")) return err("ENOMEM");
    const ctx = new IommufdCtx(this, mode);
    ctx.file = new File(fops, ctx, flags);
    this.contexts.add(ctx);
    return ctx.file;
  }

  /** iommufd_ctx_from_file(): a reference on the context, or EBADFD for another file. */
  ctxFromFile(f: File): IommufdCtx | number {
    const ops = f.ops as FileOperations<IommufdCtx>;
    if (ops !== this.fops && ops !== this.vfioFops) return err("EBADFD");
    const ctx = f.priv as IommufdCtx;
    ctx.get();
    return ctx;
  }

  /** iommufd_ctx_from_fd(): EBADF for a closed fd. */
  ctxFromFd(task: Task, fd: number): IommufdCtx | number {
    const f = fd < 0 ? undefined : task.files.get(fd);
    if (!f) return err("EBADF");
    return this.ctxFromFile(f);
  }

  /** iommufd_fops_ioctl() */
  private ioctl(ctx: IommufdCtx, task: Task, cmd: number, arg: bigint): number {
    const nr = cmd & 0xff;
    if (nr < U.IOMMUFD_CMD_BASE || nr - U.IOMMUFD_CMD_BASE >= this.ioctlOps.length)
      return iommufdVfioIoctl(ctx, task, cmd, arg);
    const raw = task.mm.copyFromUser(arg, 4);
    if (!raw) return err("EFAULT");
    const userSize = new DataView(raw.buffer).getUint32(0, true);
    const o = this.ioctlOps[nr - U.IOMMUFD_CMD_BASE] as IoctlOp;
    if (o.ioctlNum !== cmd) return err("ENOTTY"); // -ENOIOCTLCMD from the driver
    if (userSize < o.minSize) return err("EINVAL");
    const buf = copyStructFromUser(task, o.size, arg, userSize);
    if (typeof buf === "number") return buf;
    return o.execute(new Ucmd(ctx, task, arg, userSize, buf));
  }
}

export type { IommufdDevice };
