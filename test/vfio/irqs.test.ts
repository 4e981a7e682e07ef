/**
 * vfio-pci interrupts (drivers/vfio/pci/vfio_pci_intrs.c, vfio_set_irqs_validate_and_prepare
 * in vfio_main.c, Linux 6.12): GET_IRQ_INFO, the SET_IRQS argument checks, eventfd wiring,
 * software triggers (VST-008), one mode at a time, INTx masking through DisINTx.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as R from "../../src/uapi/pci_regs.js";
import * as U from "../../src/uapi/vfio.js";
import { bootCase, eventfds, Proc } from "./support.js";

const E1000E = "0000:02:00.0";
const EDU = "0000:02:03.0";
const { VFIO_PCI_INTX_IRQ_INDEX: INTX, VFIO_PCI_MSI_IRQ_INDEX: MSI } = U;
const { VFIO_PCI_MSIX_IRQ_INDEX: MSIX, VFIO_PCI_ERR_IRQ_INDEX: ERR } = U;
const { VFIO_PCI_REQ_IRQ_INDEX: REQ } = U;
const TRIGGER = U.VFIO_IRQ_SET_ACTION_TRIGGER;
const MASK = U.VFIO_IRQ_SET_ACTION_MASK;
const UNMASK = U.VFIO_IRQ_SET_ACTION_UNMASK;
const NONE = U.VFIO_IRQ_SET_DATA_NONE;
const BOOL = U.VFIO_IRQ_SET_DATA_BOOL;
const EVENTFD = U.VFIO_IRQ_SET_DATA_EVENTFD;

async function e1000e() {
  const { k } = await bootCase("device-info");
  const p = new Proc(k.spawn());
  return { p, ...p.openDevice(E1000E) };
}

async function edu() {
  const { k } = await bootCase("group-legacy-bridge");
  const p = new Proc(k.spawn());
  for (const b of ["0000:02:01.0", "0000:02:02.0", "0000:03:01.0"]) p.bind(b);
  return { p, ...p.openDevice(EDU) };
}

describe("GET_IRQ_INFO", () => {
  test("counts from the pin and the capabilities; ERR only for PCIe", async () => {
    const a = await e1000e();
    const info = [INTX, MSI, MSIX, ERR, REQ].map((i) => a.p.irqInfo(a.dev, i));
    assert.deepEqual(
      info.map((x) => [x.ret, x.flags, x.count]),
      [
        [0, 7, 1], // EVENTFD | MASKABLE | AUTOMASKED
        [0, 9, 1], // EVENTFD | NORESIZE
        [0, 1, 5], // dynamic MSI-X: resizable
        [0, 9, 1],
        [0, 9, 1],
      ],
    );
    assert.equal(a.p.irqInfo(a.dev, 5).ret, err("EINVAL"));
    assert.equal(a.p.irqInfo(a.dev, INTX, 12).ret, err("EINVAL"));
    const b = await edu();
    assert.equal(b.p.irqInfo(b.dev, ERR).ret, err("EINVAL")); // conventional PCI
    assert.deepEqual(
      [MSIX, MSI].map((i) => b.p.irqInfo(b.dev, i).count),
      [0, 1],
    );
  });
});

describe("SET_IRQS argument checks", () => {
  test("malformed headers and payloads are EINVAL, unsupported actions ENOTTY", async () => {
    const { p, dev } = await e1000e();
    const e = p.eventfd();
    const fd2 = eventfds(e.fd, e.fd);
    const cases: [number, Parameters<Proc["setIrqs"]>][] = [
      [err("EINVAL"), [dev, NONE | TRIGGER, MSIX, 0, 1, new Uint8Array(0), 19]], // argsz
      [err("EINVAL"), [dev, NONE | TRIGGER | 0x40, MSIX, 0, 1]], // unknown flag
      [err("EINVAL"), [dev, NONE | BOOL | TRIGGER, MSIX, 0, 1]], // two data types
      [err("EINVAL"), [dev, TRIGGER, MSIX, 0, 1]], // no data type
      [err("EINVAL"), [dev, NONE | TRIGGER, 5, 0, 1]], // index
      [err("EINVAL"), [dev, NONE | TRIGGER, MSIX, 5, 1]], // start past the vectors
      [err("EINVAL"), [dev, NONE | TRIGGER, MSIX, 4, 2]], // start + count past them
      [err("EINVAL"), [dev, NONE | TRIGGER, MSIX, 1, 0xffffffff]], // count wraps
      [err("EINVAL"), [dev, EVENTFD | TRIGGER, MSIX, 0, 2, fd2, 24]], // payload short
      [err("EINVAL"), [dev, NONE | TRIGGER, ERR, 0, 2]], // ERR has one vector
      [err("ENOTTY"), [dev, NONE | MASK | UNMASK, INTX, 0, 1]], // two actions
      [err("ENOTTY"), [dev, NONE | MASK, MSIX, 0, 1]], // MSI-X masking is not exported
      [err("EINVAL"), [dev, NONE | MASK, INTX, 0, 1]], // INTx not enabled
    ];
    for (const [want, args] of cases)
      assert.equal(p.setIrqs(...args), want, JSON.stringify(args.slice(1, 5)));
  });

  test("eventfds are checked: a closed fd is EBADF, a non-eventfd EINVAL", async () => {
    const { p, dev, group } = await e1000e();
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, MSIX, 0, 1, eventfds(999)), err("EBADF"));
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, MSIX, 0, 1, eventfds(group)), err("EINVAL"));
    // The failed enable left no mode behind: MSI can be enabled now.
    const e = p.eventfd();
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, MSI, 0, 1, eventfds(e.fd)), 0);
  });
});

describe("MSI and MSI-X", () => {
  test("VST-008: vectors wired to eventfds, software-triggered, then disabled", async () => {
    const { p, dev } = await e1000e();
    const es = [0, 1, 2, 3, 4].map(() => p.eventfd());
    const fds = eventfds(...es.map((e) => e.fd));
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, MSIX, 0, 5, fds), 0);
    for (const [i, e] of es.entries()) {
      assert.equal(e.drain(), 0n);
      assert.equal(p.setIrqs(dev, NONE | TRIGGER, MSIX, i, 1), 0);
      assert.equal(e.drain(), 1n);
      assert.equal(e.drain(), 0n);
    }
    // DATA_BOOL triggers only the vectors whose byte is set.
    assert.equal(p.setIrqs(dev, BOOL | TRIGGER, MSIX, 1, 3, new Uint8Array([1, 0, 1])), 0);
    assert.deepEqual(
      es.map((e) => e.drain()),
      [0n, 1n, 0n, 1n, 0n],
    );
    // An fd of -1 unwires one vector; triggering it does nothing.
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, MSIX, 2, 1, eventfds(-1)), 0);
    assert.equal(p.setIrqs(dev, NONE | TRIGGER, MSIX, 0, 5), 0);
    assert.deepEqual(
      es.map((e) => e.drain()),
      [1n, 1n, 0n, 1n, 1n],
    );
    assert.equal(p.setIrqs(dev, NONE | TRIGGER, MSIX, 0, 0), 0);
    assert.equal(p.setIrqs(dev, NONE | TRIGGER, MSIX, 0, 5), err("EINVAL")); // not enabled
  });

  test("one mode at a time: INTx and MSI are refused while MSI-X is on", async () => {
    const { p, dev } = await e1000e();
    const e = p.eventfd();
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, MSIX, 0, 1, eventfds(e.fd)), 0);
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, MSI, 0, 1, eventfds(e.fd)), err("EINVAL"));
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, INTX, 0, 1, eventfds(e.fd)), err("EINVAL"));
    // Disabling another mode than the active one is refused too.
    assert.equal(p.setIrqs(dev, NONE | TRIGGER, MSI, 0, 0), err("EINVAL"));
    assert.equal(p.setIrqs(dev, NONE | TRIGGER, MSIX, 0, 0), 0);
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, MSI, 0, 1, eventfds(e.fd)), 0);
  });

  test("a failed block unwinds and MSI is off again", async () => {
    const { p, dev } = await e1000e();
    const e = p.eventfd();
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, MSIX, 0, 2, eventfds(e.fd, 999)), err("EBADF"));
    assert.equal(p.setIrqs(dev, NONE | TRIGGER, MSIX, 0, 1), err("EINVAL"));
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, INTX, 0, 1, eventfds(e.fd)), 0);
  });

  test("closing the device turns interrupts off", async () => {
    const { p, dev, group } = await e1000e();
    const e = p.eventfd();
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, MSIX, 0, 1, eventfds(e.fd)), 0);
    p.sys.close(dev);
    p.poke(0, Buffer.from(`${E1000E}\0`));
    const again = p.sys.ioctl(group, U.VFIO_GROUP_GET_DEVICE_FD, p.buf);
    assert.ok(again >= 0);
    assert.equal(p.setIrqs(again, EVENTFD | TRIGGER, MSI, 0, 1, eventfds(e.fd)), 0);
  });
});

describe("INTx", () => {
  test("enable clears DisINTx; MASK sets it on the device only; UNMASK clears it", async () => {
    const { p, dev } = await edu();
    const cmd = () => p.hwConfig(EDU, R.PCI_COMMAND, 2) & R.PCI_COMMAND_INTX_DISABLE;
    const e = p.eventfd();
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, INTX, 0, 1, eventfds(e.fd)), 0);
    assert.equal(cmd(), 0);
    assert.equal(p.setIrqs(dev, NONE | MASK, INTX, 0, 1), 0);
    assert.equal(cmd(), R.PCI_COMMAND_INTX_DISABLE);
    assert.equal(p.readLe(dev, 7, R.PCI_COMMAND, 2) & R.PCI_COMMAND_INTX_DISABLE, 0);
    assert.equal(p.setIrqs(dev, BOOL | UNMASK, INTX, 0, 1, new Uint8Array([1])), 0);
    assert.equal(cmd(), 0);
    assert.equal(p.setIrqs(dev, EVENTFD | MASK, INTX, 0, 1, eventfds(e.fd)), err("ENOTTY"));
    assert.equal(p.setIrqs(dev, NONE | MASK, INTX, 1, 1), err("EINVAL"));
  });

  test("DisINTx written through config space masks; the trigger loops back", async () => {
    const { p, dev } = await edu();
    const cmd = () => p.hwConfig(EDU, R.PCI_COMMAND, 2) & R.PCI_COMMAND_INTX_DISABLE;
    const e = p.eventfd();
    p.writeLe(dev, 7, R.PCI_COMMAND, 2, R.PCI_COMMAND_INTX_DISABLE | R.PCI_COMMAND_MEMORY);
    // Enabled while the user has DisINTx set: starts masked.
    assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, INTX, 0, 1, eventfds(e.fd)), 0);
    assert.equal(cmd(), R.PCI_COMMAND_INTX_DISABLE);
    // A virtually disabled INTx does not reach the eventfd even when triggered.
    assert.equal(p.setIrqs(dev, NONE | TRIGGER, INTX, 0, 1), 0);
    assert.equal(e.drain(), 0n);
    p.writeLe(dev, 7, R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY);
    assert.equal(cmd(), 0);
    assert.equal(p.setIrqs(dev, BOOL | TRIGGER, INTX, 0, 1, new Uint8Array([1])), 0);
    assert.equal(e.drain(), 1n);
    assert.equal(p.setIrqs(dev, NONE | TRIGGER, INTX, 0, 0), 0);
    assert.equal(p.setIrqs(dev, NONE | TRIGGER, INTX, 0, 1), err("EINVAL"));
  });
});

describe("ERR and REQ", () => {
  test("single eventfds: set, loop back, clear; ERR refused on conventional PCI", async () => {
    const { p, dev } = await e1000e();
    const e = p.eventfd();
    for (const index of [ERR, REQ]) {
      assert.equal(p.setIrqs(dev, EVENTFD | TRIGGER, index, 0, 1, eventfds(e.fd)), 0);
      assert.equal(p.setIrqs(dev, NONE | TRIGGER, index, 0, 1), 0);
      assert.equal(p.setIrqs(dev, BOOL | TRIGGER, index, 0, 1, new Uint8Array([1])), 0);
      assert.equal(e.drain(), 2n);
      assert.equal(p.setIrqs(dev, NONE | TRIGGER, index, 0, 0), 0); // clears it
      assert.equal(p.setIrqs(dev, NONE | TRIGGER, index, 0, 1), err("EINVAL"));
      assert.equal(p.setIrqs(dev, BOOL | TRIGGER, index, 0, 0), err("EINVAL"));
    }
    const b = await edu();
    const f = b.p.eventfd();
    assert.equal(b.p.setIrqs(b.dev, EVENTFD | TRIGGER, ERR, 0, 1, eventfds(f.fd)), err("EINVAL"));
    assert.equal(b.p.setIrqs(b.dev, EVENTFD | TRIGGER, REQ, 0, 1, eventfds(f.fd)), 0);
  });
});
