/**
 * What the runtimes' node:tls does as a STARTTLS server with client certificates, checked
 * by doing it (gateway/nbd/README.md "TLS"): the reason `--tls-verify-peer` is refused
 * under Deno. If Deno starts refusing a certificate from another CA, this test fails:
 * then re-check and lift the refusal in runtime/tls-server.ts.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import tls from "node:tls";
import { makeTestPki, type TestPki } from "./_pki.ts";

const ROOT = join(import.meta.dir, "../../..");
const PROBE = join(import.meta.dir, "_tls-verify-probe.ts");
let pki: TestPki;

beforeAll(async () => {
  pki = await makeTestPki();
});
afterAll(async () => {
  await pki?.remove();
});

/** Starts the probe under `cmd`, connects once with `clientDir`'s certificate, returns what the probe saw. */
async function probe(cmd: string[], clientDir: string): Promise<string> {
  const proc = Bun.spawn([...cmd, PROBE, pki.server], { cwd: ROOT, stdout: "pipe", stderr: "inherit" });
  try {
    const reader = proc.stdout.getReader();
    let out = "";
    while (!/listening (\d+)\n/.test(out)) {
      const r = await reader.read();
      if (r.done) throw new Error(`probe exited: ${out}`);
      out += new TextDecoder().decode(r.value);
    }
    const port = Number(/listening (\d+)/.exec(out)![1]);
    const read = (name: string) => readFileSync(join(clientDir, name), "utf8");
    await new Promise<void>((resolve) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port,
        servername: "localhost",
        ca: read("ca-cert.pem"),
        cert: read("client-cert.pem"),
        key: read("client-key.pem"),
      });
      socket.on("data", () => {});
      socket.on("error", () => resolve());
      socket.on("close", () => resolve());
    });
    while (out.split("\n").length < 3) {
      // The probe's second line: what it made of this connection.
      const r = await reader.read();
      if (r.done) break;
      out += new TextDecoder().decode(r.value);
    }
    return out.split("\n")[1] ?? "";
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

test("Bun's STARTTLS server refuses a client certificate from another CA, and accepts one from its CA", async () => {
  expect(await probe([process.execPath], pki.clientOtherCa)).toMatch(/^refused/);
  expect(await probe([process.execPath], pki.client)).toBe("secure authorized=true");
}, 60_000);

test("Deno's STARTTLS server accepts a client certificate from another CA (why --tls-verify-peer is refused there)", async () => {
  const deno = [join(ROOT, "node_modules/.bin/deno"), "run", "-A"];
  expect(await probe(deno, pki.clientOtherCa)).toMatch(/^secure/);
}, 60_000);
