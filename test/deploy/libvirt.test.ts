/**
 * The libvirt domains of deploy/libvirt: libvirt's own schema accepts them
 * (`virt-xml-validate`, Debian's libvirt-clients), a broken one is refused, and the disk
 * elements docs/operations.md shows are the ones in the files.
 */
import { expect, test } from "bun:test";
import { readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { requireTools, run } from "../support/tools.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FILES = ["nbd-tls-domain.xml", "nbd-unix-domain.xml"];

/** The `<disk>` element of a domain, unindented as the docs show it. */
function diskOf(xml: string): string {
  const m = /^ {4}<disk[\s\S]*?<\/disk>$/m.exec(xml);
  if (!m) throw new Error("no <disk> element");
  return m[0]
    .split("\n")
    .map((l) => l.slice(4))
    .join("\n");
}

test.each(FILES)(
  "virt-xml-validate accepts deploy/libvirt/%s, and operations.md shows its disk",
  async (file) => {
    requireTools("virt-xml-validate", "xmllint");
    const path = join(ROOT, "deploy/libvirt", file);
    const r = await run(["virt-xml-validate", path, "domain"]);
    expect(r.out.trim()).toBe(`${path} validates`);
    expect(r.code).toBe(0);
    const docs = await readFile(join(ROOT, "docs/operations.md"), "utf8");
    expect(docs).toContain(`\`\`\`xml\n${diskOf(await readFile(path, "utf8"))}\n\`\`\``);
  },
);

test("a domain with a made-up NBD attribute value is refused (the check can fail)", async () => {
  requireTools("virt-xml-validate", "xmllint");
  const good = await readFile(join(ROOT, "deploy/libvirt", FILES[0]!), "utf8");
  const bad = join(tmpdir(), `blockmend-bad-domain-${process.pid}.xml`);
  await writeFile(bad, good.replace("tls='yes'", "tls='maybe'"));
  const r = await run(["virt-xml-validate", bad, "domain"]);
  expect(r.code).not.toBe(0);
  expect(r.out).toContain("fails to validate");
});
