/** `access/`: token files, the Host allowlist and the route tables of both APIs. */
import { expect, test } from "bun:test";
import { allowedHosts, hostOfHeader } from "../../access/request-guard.ts";
import { MIN_TOKEN_CHARS, parseTokenFile } from "../../access/token-file.ts";
import { storeScopeOf } from "../../chunkstore/server.ts";
import { isPublic, scopeOf } from "../../gateway/http/api-access.ts";

const T = "0123456789abcdef0123";
const rules = { scopes: ["read", "write"] as const, defaultScope: "write" as const };

test("a token file: one token a line, an optional scope, comments and blank lines ignored", () => {
  expect(parseTokenFile(`# ops\n\n${T}\n${T}x read\n  ${T}y   write \n`, "f", rules)).toEqual([
    { token: T, scope: "write" },
    { token: `${T}x`, scope: "read" },
    { token: `${T}y`, scope: "write" },
  ]);
});

test("a token file refuses short tokens, odd characters, unknown scopes, extra words and repeats, naming the line", () => {
  expect(() => parseTokenFile("short\n", "f", rules)).toThrow(
    `f, line 1: a token must be ${MIN_TOKEN_CHARS} to`,
  );
  expect(() => parseTokenFile(`\n${T}"\n`, "f", rules)).toThrow("f, line 2: a token may hold only");
  expect(() => parseTokenFile(`${T} admin\n`, "f", rules)).toThrow(
    'optional scope (read or write); got "admin"',
  );
  expect(() => parseTokenFile(`${T} read write\n`, "f", rules)).toThrow("line 1");
  expect(() => parseTokenFile(`${T}\n${T} read\n`, "f", rules)).toThrow("line 2: this token is listed twice");
  expect(() => parseTokenFile(`${T} read\n`, "--token-file t", { scopes: [], defaultScope: "full" })).toThrow(
    "this file's scope is given by the flag",
  );
});

test("Host headers: names, ports, IPv6 in brackets, case and a trailing dot; garbage is null", () => {
  expect(hostOfHeader("Example.COM.:8080")).toBe("example.com");
  expect(hostOfHeader("[::1]:8080")).toBe("::1");
  expect(hostOfHeader("127.0.0.1")).toBe("127.0.0.1");
  expect(hostOfHeader("a b")).toBeNull();
  expect(hostOfHeader("x:y:z")).toBeNull();
  expect(hostOfHeader("")).toBeNull();
});

test("the Host rule is on for loopback listeners and for any listener with a public name", () => {
  expect([...allowedHosts({ hostname: "127.0.0.1" })!].sort()).toEqual(["127.0.0.1", "::1", "localhost"]);
  expect(allowedHosts({ hostname: "127.0.0.1", publicNames: ["GW.example"] })!.has("gw.example")).toBe(true);
  expect(allowedHosts({ hostname: "10.0.0.5" })).toBeNull(); // tokens are required there
  expect(allowedHosts({ hostname: "10.0.0.5", publicNames: ["gw"] })!.has("10.0.0.5")).toBe(true);
  const wildcard = allowedHosts({ hostname: "0.0.0.0", publicNames: ["gw"] })!;
  expect(wildcard.has("127.0.0.1")).toBe(true); // the machine's interface addresses
  expect(allowedHosts({})).toBeNull();
});

test("gateway scopes: the status routes need status, everything else full (HEAD as GET)", () => {
  for (const [m, p] of [
    ["GET", "/v1/heal"],
    ["HEAD", "/v1/stores"],
    ["GET", "/v1/stores/b/safe-to-remove"],
    ["GET", "/metrics"],
    ["GET", "/v1/openapi.json"],
    ["GET", "/v1/health"],
    ["GET", "/v1/events"],
    ["GET", "/v1/gc"],
  ])
    expect(`${m} ${p} ${scopeOf(m!, p!)}`).toBe(`${m} ${p} status`);
  for (const [m, p] of [
    ["GET", "/v1/images"],
    ["GET", "/v1/heal/limits"],
    ["GET", "/v1/stores//safe-to-remove"],
    ["PUT", "/v1/stores/b/maintenance"],
    ["POST", "/v1/heal"],
    ["GET", "/metrics/x"],
    ["POST", "/v1/gc"],
  ])
    expect(`${m} ${p} ${scopeOf(m!, p!)}`).toBe(`${m} ${p} full`);
});

test("public without a token: only the dashboard's page and its files", () => {
  expect(isPublic("GET", "/")).toBe(true);
  expect(isPublic("HEAD", "/dashboard/app.js")).toBe(true);
  expect(isPublic("GET", "/dashboard/")).toBe(false);
  expect(isPublic("GET", "/dashboard/a/b.js")).toBe(false);
  expect(isPublic("POST", "/")).toBe(false);
  expect(isPublic("GET", "/v1/events")).toBe(false);
});

test("chunk store scopes: reads and read batches need read, every write needs write", () => {
  expect(storeScopeOf("GET", "/v1/chunks/abc")).toBe("read");
  expect(storeScopeOf("HEAD", "/v1/chunks/abc")).toBe("read");
  expect(storeScopeOf("POST", "/v1/chunks/has")).toBe("read");
  expect(storeScopeOf("POST", "/v1/chunks/batch-get")).toBe("read");
  for (const [m, p] of [
    ["PUT", "/v1/chunks/abc"],
    ["DELETE", "/v1/chunks/abc"],
    ["POST", "/v1/chunks/batch-put"],
    ["PUT", "/v1/refs/head.x"],
    ["DELETE", "/v1/refs/head.x"],
  ])
    expect(storeScopeOf(m!, p!)).toBe("write");
});

test("a refused request's body is read (64 KiB at most) before the refusal goes out, so the client is not reset mid-send", async () => {
  const { Hono } = await import("hono");
  const { apiGuard } = await import("../../gateway/http/api-access.ts");
  const { AccessRefusedError } = await import("../../access/access-errors.ts");
  const app = new Hono();
  for (const m of apiGuard({ hostname: "127.0.0.1", tokens: [{ token: "s".repeat(32), scope: "status" }] }))
    app.use(m);
  app.post("/v1/gc", (c) => c.json({ ran: true }));
  app.onError((err, c) =>
    err instanceof AccessRefusedError ? c.json({ code: err.code }, err.status as 403) : c.text("x", 500),
  );
  const sent = (total: number) => {
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled >= total) return controller.close();
        const piece = new Uint8Array(Math.min(16 * 1024, total - pulled));
        pulled += piece.byteLength;
        controller.enqueue(piece);
      },
    });
    return { body, pulled: () => pulled };
  };
  const post = (body: ReadableStream<Uint8Array>) =>
    app.request("http://127.0.0.1/v1/gc", {
      method: "POST",
      body,
      headers: {
        host: "127.0.0.1",
        authorization: `Bearer ${"s".repeat(32)}`,
        "content-type": "application/json",
      },
      duplex: "half",
    } as RequestInit);
  const small = sent(40 * 1024);
  const res = await post(small.body);
  expect(res.status).toBe(403);
  expect(small.pulled()).toBe(40 * 1024); // all of it
  const big = sent(10 * 1024 * 1024);
  expect((await post(big.body)).status).toBe(403);
  expect(big.pulled()).toBeLessThan(200 * 1024); // 64 KiB and what the stream had queued, not 10 MiB
});
