/**
 * State-machine walks over the VFIO container/group/device objects: the same few actions
 * (attach the group to the container, set the IOMMU, take a device fd, detach, close a
 * file) in different orders, with the state observed after every step (the group's
 * status flags, the container's extension answer), then whether the group can be opened
 * again (it cannot while any file still holds it). Invalid orders are the point: each
 * error the kernel gives in a given state is a fact the model must reproduce.
 */
import * as V from "../../uapi/vfio.js";
import {
  NVME,
  NVME_GROUP,
  SMALL,
  bindVfio,
  getDevice,
  groupStatus,
  permutations,
  setContainer,
} from "./common.js";
import { Script, type GeneratedCase } from "./dsl.js";

type Action = "set" | "iommu" | "dev" | "unset" | "closeC" | "closeG" | "closeD" | "dupG";

const LABEL: Record<Action, string> = {
  set: "S",
  iommu: "I",
  dev: "D",
  unset: "U",
  closeC: "xc",
  closeG: "xg",
  closeD: "xd",
  dupG: "dg",
};

function act(s: Script, a: Action, state: { dev: boolean; dup: boolean }): void {
  switch (a) {
    case "set":
      setContainer(s, "g", "c", "attach the group");
      break;
    case "iommu":
      s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU, { note: "type1v2" });
      break;
    case "dev":
      getDevice(s, "g", NVME, "d", "device fd");
      state.dev = true;
      break;
    case "unset":
      s.ioctl("$g", "VFIO_GROUP_UNSET_CONTAINER", 0, { note: "detach the group" });
      break;
    case "closeC":
      s.close("$c", "close the container");
      break;
    case "closeG":
      s.close("$g", "close the group");
      break;
    case "closeD":
      if (state.dev) s.close("$d", "close the device");
      break;
    case "dupG":
      s.dup("$g", "g2", "dup the group");
      state.dup = true;
      break;
  }
}

/** After each step: what the group and the container say now. */
function probe(s: Script, state: { dup: boolean }): void {
  groupStatus(s, state.dup ? "g2" : "g");
  s.ioctl("$c", "VFIO_CHECK_EXTENSION", V.VFIO_TYPE1v2_IOMMU);
}

function walk(name: string, actions: Action[], note: string): GeneratedCase {
  const s = new Script(name, note);
  bindVfio(s, NVME);
  s.open("/dev/vfio/vfio", "c");
  s.open(`/dev/vfio/${NVME_GROUP}`, "g");
  const state = { dev: false, dup: false };
  for (const a of actions) {
    act(s, a, state);
    probe(s, state);
  }
  if (state.dev) s.ioctl("$d", "VFIO_DEVICE_RESET", 0, { note: "is the device fd still usable?" });
  s.open(`/dev/vfio/${NVME_GROUP}`, "again", ["O_RDWR", "O_CLOEXEC"], "open the group again");
  s.close("$again");
  for (const f of ["d", "g", "c"] as const) if (f !== "d" || state.dev) s.close(`$${f}`);
  if (state.dup) s.close("$g2");
  s.open(
    `/dev/vfio/${NVME_GROUP}`,
    "last",
    ["O_RDWR", "O_CLOEXEC"],
    "everything closed: free again",
  );
  groupStatus(s, "last");
  return { name, family: "vfio-walk", spec: SMALL, script: s };
}

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  // every order of the five central actions, every other one (60 walks)
  const five = permutations<Action>(["set", "iommu", "dev", "unset", "closeC"]);
  five.forEach((p, i) => {
    if (i % 2 === 0)
      out.push(
        walk(
          `walk-${p.map((a) => LABEL[a]).join("-")}`,
          p,
          `actions in this order: ${p.join(", ")}`,
        ),
      );
  });
  // closing orders once everything is set up, with a dup of the group holding it (24)
  for (const p of permutations<Action>(["closeC", "closeG", "closeD", "unset"])) {
    const acts: Action[] = ["set", "iommu", "dev", "dupG", ...p];
    out.push(
      walk(`close-${p.map((a) => LABEL[a]).join("-")}`, acts, `set up, then: ${p.join(", ")}`),
    );
  }
  return out;
}
