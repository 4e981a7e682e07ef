/**
 * Scenario files (YAML): a host, processes, and steps with expectations. A step is a
 * syscall-script operation (SCRIPT.md vocabulary, `req` names resolved to numbers, struct
 * arguments by uAPI struct name) or a macro for a common VFIO chore; `expect` says what
 * the step must return. Validated with zod; errors carry the file, line and field.
 */
import { z } from "zod";

const scalar = z.union([z.number(), z.string(), z.null(), z.boolean()]);
export type Value = z.infer<typeof scalar> | Value[] | { [k: string]: Value };
const value: z.ZodType<Value> = z.lazy(() =>
  z.union([scalar, z.array(value), z.record(z.string(), value)]),
);

export const expectSchema = z.strictObject({
  ret: z.union([z.number(), z.literal("fd"), z.literal("buf")]).optional(),
  errno: z
    .union([z.string().regex(/^E[A-Z0-9]+$/, "expected an errno name like EINVAL"), z.null()])
    .optional(),
  /** Fields of the struct argument after the call (a subset). */
  out: z.record(z.string(), value).optional(),
  data: z.string().optional(),
});

export const stepSchema = z
  .object({
    op: z.string(),
    process: z.string().optional(),
    note: z.string().optional(),
    expect: expectSchema.optional(),
  })
  .catchall(value);

export const scenarioSchema = z.strictObject({
  name: z.string(),
  description: z.string().optional(),
  /** A built-in host name, or a host file relative to the scenario. */
  host: z.string(),
  kernel: z
    .strictObject({
      cmdline: z.string().default(""),
      /**
       * The kernel era KVM follows (kernel/kvm/profile.ts); default 6.12. "2021-proposal"
       * is a design that was never merged (KVM_ALLOW_INCOHERENT_DMA).
       */
      profile: z.enum(["6.12", "3.15", "3.13", "2021-proposal"]).optional(),
      /**
       * The kernel build (kernel/kconfig.ts): "debian" (legacy container + type1) or
       * "iommufd" (iommufd + the VFIO device cdev); default: what the host ran.
       */
      build: z.enum(["debian", "iommufd"]).optional(),
      /**
       * POWER hosts: whose TCE hypercall path KVM follows, 6.12 (virtual mode, then the VMM)
       * or 5.18 (real mode first; the real-mode handlers were retired in 5.19).
       */
      tce_era: z.enum(["6.12", "5.18"]).optional(),
    })
    .default({ cmdline: "" }),
  processes: z
    .array(
      z.strictObject({
        name: z.string(),
        uid: z.number().int().min(0).default(0),
        caps: z
          .array(z.enum(["CAP_SYS_ADMIN", "CAP_IPC_LOCK", "CAP_SYS_RAWIO", "CAP_NET_ADMIN"]))
          .optional(),
        /** RLIMIT_MEMLOCK in bytes. */
        memlock: z.number().int().min(0).optional(),
      }),
    )
    .default([{ name: "main", uid: 0 }]),
  steps: z.array(stepSchema).min(1),
});

export type Scenario = z.infer<typeof scenarioSchema>;
export type Step = z.infer<typeof stepSchema>;
export type Expect = z.infer<typeof expectSchema>;
