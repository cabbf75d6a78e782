import net from "node:net";
import { serveHttp } from "./runtime/serve-http.ts";
import { loadHttpsCredentials } from "./runtime/tls-files.ts";
const R = (await import("node:fs")).readFileSync("/tmp/sec/pki-root", "utf8");
const s = await serveHttp(() => new Response("ok"), { hostname: "127.0.0.1", port: 0, tls: await loadHttpsCredentials(R + "/server") });
const p = await serveHttp(() => new Response("ok"), { hostname: "127.0.0.1", port: 0 });
const port = Number(new URL(s.url).port);
const t0 = Date.now();
const stall = net.connect(port, "127.0.0.1");
stall.on("connect", () => stall.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])));
const closed = new Promise<number>((r) => stall.on("close", () => r(Date.now() - t0)));
stall.on("error", () => {});
const pport = Number(new URL(p.url).port);
// oversized header to plain
const big = await new Promise<string>((resolve) => {
  const c = net.connect(pport, "127.0.0.1", () => c.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${"a".repeat(100_000)}\r\n\r\n`));
  let out = ""; c.on("data", (d) => (out += d)); c.on("close", () => resolve(out.slice(0, 60))); c.on("error", (e) => resolve("error " + e.message));
});
console.log("big header:", JSON.stringify(big));
// TLS hello to plain
const hello = await new Promise<string>((resolve) => {
  const c = net.connect(pport, "127.0.0.1", () => c.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])));
  let out = ""; c.on("data", (d) => (out += d)); c.on("close", () => resolve(out.slice(0, 60))); c.on("error", (e) => resolve("error " + e.message));
  setTimeout(() => { resolve("open after 3s: " + out.slice(0,40)); c.destroy(); }, 3000);
});
console.log("tls to plain:", JSON.stringify(hello));
const ok = await fetch(p.url); console.log("plain still", ok.status);
const r = await Promise.race([closed, new Promise<string>((r) => setTimeout(() => r("still open after 40s"), 40000))]);
console.log("stalled handshake closed after", r);
await s.close(); await p.close(); process.exit(0);
