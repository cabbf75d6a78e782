/**
 * The gateway's HTTP API through `app.request()` over an image service on memory stores:
 * every route, the data paths against the image layer, and the one error shape.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createGatewayApp } from "../../../gateway/http/http-api.ts";
import {
  DATA_PIECE_BYTES,
  type ImageInfo,
  MAX_DATA_BODY_BYTES,
  type MapResponse,
} from "../../../gateway/http/http-wire.ts";
import type { ImageService } from "../../../gateway/image/image-service.ts";
import { imageService, pattern } from "../image/_image-fixture.ts";

const MiB = 1024 * 1024;
const H = "http://gateway";

let services: ImageService[] = [];
afterEach(async () => {
  await Promise.all(services.map((s) => s.close()));
  services = [];
});

async function setup(options: Parameters<typeof createGatewayApp>[1] = {}) {
  const { service } = await imageService();
  services.push(service);
  const app = createGatewayApp(service, options);
  const request = async (path: string, init?: RequestInit) => app.request(`${H}${path}`, init);
  const json = (method: string, path: string, body: unknown) =>
    request(path, { method, body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  const put = (name: string, offset: number, bytes: Uint8Array) =>
    request(`/v1/images/${name}/data?offset=${offset}`, {
      method: "PUT",
      body: bytes as Uint8Array<ArrayBuffer>,
    });
  const read = async (name: string, offset: number, length: number) => {
    const res = await request(`/v1/images/${name}/data`, {
      headers: { range: `bytes=${offset}-${offset + length - 1}` },
    });
    expect(res.status).toBe(206);
    return bytesOf(res);
  };
  return { service, app, request, json, put, read };
}

/** A response body as bytes. */
async function bytesOf(res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer());
}

/** The stable error shape: `{"error":{"code","message"}}` and nothing else. */
async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message"]);
  expect(typeof body.error.code).toBe("string");
  expect(body.error.message.length).toBeGreaterThan(0);
  return body.error;
}

describe("gateway HTTP API: images", () => {
  test("create, list, info, grow and delete", async () => {
    const { request, json } = await setup();
    const created = await json("POST", "/v1/images", { name: "web01", size: 8 * MiB });
    expect(created.status).toBe(201);
    expect(created.headers.get("location")).toBe("/v1/images/web01");
    const info = (await created.json()) as ImageInfo;
    expect(info).toMatchObject({
      name: "web01",
      size: 8 * MiB,
      chunkSize: 65536,
      generation: 1,
      snapshots: [],
    });
    expect(info.root).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.keys(info.synced).sort()).toEqual(["a", "b", "c"]);

    expect((await json("POST", "/v1/images", { name: "db", size: 4096, chunkSize: 4096 })).status).toBe(201);
    const list = (await (await request("/v1/images")).json()) as { images: ImageInfo[] };
    expect(list.images.map((i) => i.name)).toEqual(["db", "web01"]);
    expect(list.images[0]!.chunkSize).toBe(4096);

    const got = (await (await request("/v1/images/web01")).json()) as ImageInfo;
    expect(got).toMatchObject({ name: "web01", size: 8 * MiB });

    const grown = await json("PATCH", "/v1/images/web01", { size: 16 * MiB });
    expect(grown.status).toBe(200);
    const after = (await grown.json()) as ImageInfo;
    expect(after.size).toBe(16 * MiB);
    expect(after.generation).toBeGreaterThan(got.generation);
    expect(((await (await request("/v1/images/web01")).json()) as ImageInfo).size).toBe(16 * MiB);

    expect((await request("/v1/images/web01", { method: "DELETE" })).status).toBe(204);
    expect((await request("/v1/images/web01")).status).toBe(404);
    const left = (await (await request("/v1/images")).json()) as { images: ImageInfo[] };
    expect(left.images.map((i) => i.name)).toEqual(["db"]);
  });

  test("data written before a grow reads back after it, and the new tail reads as zeroes", async () => {
    const { json, put, read } = await setup();
    await json("POST", "/v1/images", { name: "g", size: MiB });
    const data = pattern(MiB, 3);
    expect((await put("g", 0, data)).status).toBe(204);
    expect((await json("PATCH", "/v1/images/g", { size: 3 * MiB })).status).toBe(200);
    expect(await read("g", 0, MiB)).toEqual(data);
    expect(await read("g", MiB, 2 * MiB)).toEqual(new Uint8Array(2 * MiB));
  });

  test("shrinking is refused with 400 and the image keeps its size", async () => {
    const { request, json } = await setup();
    await json("POST", "/v1/images", { name: "s", size: 2 * MiB });
    const res = await json("PATCH", "/v1/images/s", { size: MiB });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).code).toBe("out_of_range");
    expect(((await (await request("/v1/images/s")).json()) as ImageInfo).size).toBe(2 * MiB);
  });
});

describe("gateway HTTP API: snapshots and clones", () => {
  test("a snapshot keeps its data while the image changes; list and delete it", async () => {
    const { request, json, put, read } = await setup();
    await json("POST", "/v1/images", { name: "vm", size: 2 * MiB });
    const before = pattern(100_000, 1);
    await put("vm", 5000, before);
    const snap = await json("POST", "/v1/images/vm/snapshots", { name: "s1" });
    expect(snap.status).toBe(201);
    expect(await snap.json()).toMatchObject({ name: "s1", size: 2 * MiB });
    await put("vm", 5000, pattern(100_000, 2));

    expect(await read("vm@s1", 5000, 100_000)).toEqual(before);
    expect(await read("vm", 5000, 100_000)).toEqual(pattern(100_000, 2));

    const list = (await (await request("/v1/images/vm/snapshots")).json()) as {
      snapshots: { name: string }[];
    };
    expect(list.snapshots.map((s) => s.name)).toEqual(["s1"]);
    const info = (await (await request("/v1/images/vm")).json()) as ImageInfo;
    expect(info.snapshots.map((s) => s.name)).toEqual(["s1"]);

    const again = await json("POST", "/v1/images/vm/snapshots", { name: "s1" });
    expect(again.status).toBe(409);
    expect((await errorOf(again)).code).toBe("image_exists");

    expect((await request("/v1/images/vm/snapshots/s1", { method: "DELETE" })).status).toBe(204);
    const gone = await request("/v1/images/vm/snapshots/s1", { method: "DELETE" });
    expect(gone.status).toBe(404);
    expect((await errorOf(gone)).code).toBe("image_not_found");
    expect((await request("/v1/images/vm@s1/data")).status).toBe(404);
  });

  // Guards a bug: a clone grown past its snapshot kept the snapshot's root under a taller block
  // map, so its reads looked up map pages that do not exist (chunk_unavailable).
  test("a clone, grown past its snapshot, starts with the snapshot's data and diverges on its own", async () => {
    const { json, put, read } = await setup();
    await json("POST", "/v1/images", { name: "base", size: MiB, chunkSize: 4096 });
    await put("base", 0, pattern(MiB, 7));
    await json("POST", "/v1/images/base/snapshots", { name: "gold" });
    const res = await json("POST", "/v1/images", { name: "vm2", from: "base@gold", size: 2 * MiB });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ name: "vm2", size: 2 * MiB, chunkSize: 4096 });
    expect(await read("vm2", 0, MiB)).toEqual(pattern(MiB, 7));
    await put("vm2", 0, pattern(4096, 8));
    expect(await read("vm2", 0, 4096)).toEqual(pattern(4096, 8));
    expect(await read("base", 0, 4096)).toEqual(pattern(4096, 7));

    const missing = await json("POST", "/v1/images", { name: "vm3", from: "base@nope" });
    expect(missing.status).toBe(404);
    expect((await errorOf(missing)).code).toBe("image_not_found");
    const noSnap = await json("POST", "/v1/images", { name: "vm3", from: "base" });
    expect(noSnap.status).toBe(400);
  });
});

describe("gateway HTTP API: data", () => {
  test("a write at an unaligned offset reads back through Range, with 206 and Content-Range", async () => {
    const { request, json, put } = await setup();
    await json("POST", "/v1/images", { name: "d", size: 4 * MiB });
    const data = pattern(300_000, 4);
    expect((await put("d", 123_457, data)).status).toBe(204);
    const res = await request("/v1/images/d/data", { headers: { range: "bytes=123457-423456" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe(`bytes 123457-423456/${4 * MiB}`);
    expect(res.headers.get("content-length")).toBe("300000");
    expect(await bytesOf(res)).toEqual(data);

    const suffix = await request("/v1/images/d/data", { headers: { range: "bytes=-10" } });
    expect(suffix.status).toBe(206);
    expect(suffix.headers.get("content-range")).toBe(`bytes ${4 * MiB - 10}-${4 * MiB - 1}/${4 * MiB}`);
    expect((await suffix.arrayBuffer()).byteLength).toBe(10);
    const open = await request("/v1/images/d/data", { headers: { range: "bytes=123457-" } });
    expect(open.headers.get("content-length")).toBe(String(4 * MiB - 123_457));
    expect((await bytesOf(open)).subarray(0, 300_000)).toEqual(data);
  });

  test("a write is durable when answered: a fresh gateway over the same stores reads it", async () => {
    const fixture = await imageService(undefined, { cache: { flushIntervalMs: 60_000 } });
    services.push(fixture.service);
    const app = createGatewayApp(fixture.service);
    await app.request(`${H}/v1/images`, {
      method: "POST",
      body: JSON.stringify({ name: "dur", size: MiB }),
      headers: { "content-type": "application/json" },
    });
    const data = pattern(70_000, 9);
    const res = await app.request(`${H}/v1/images/dur/data`, {
      method: "PUT",
      body: data as Uint8Array<ArrayBuffer>,
      headers: { "content-range": "bytes 1000-70999/*" },
    });
    expect(res.status).toBe(204);
    const fresh = (await imageService(fixture.stores)).service; // the first gateway's cache is not consulted
    services.push(fresh);
    const back = await createGatewayApp(fresh).request(`${H}/v1/images/dur/data`, {
      headers: { range: "bytes=1000-70999" },
    });
    expect(await bytesOf(back)).toEqual(data);
  });

  test("a whole-image GET streams every byte in pieces of at most DATA_PIECE_BYTES", async () => {
    const { request, json, put } = await setup();
    const size = 2 * DATA_PIECE_BYTES + 3 * 65536;
    await json("POST", "/v1/images", { name: "big", size });
    const head = pattern(65536, 5);
    const tail = pattern(65536, 6);
    await put("big", 0, head);
    await put("big", size - 65536, tail);
    const res = await request("/v1/images/big/data");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe(String(size));
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    const pieces: number[] = [];
    const all: Uint8Array = new Uint8Array(size);
    let pos = 0;
    const reader = res.body!.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      pieces.push(r.value.byteLength);
      all.set(r.value, pos);
      pos += r.value.byteLength;
    }
    expect(pos).toBe(size);
    expect(Math.max(...pieces)).toBeLessThanOrEqual(DATA_PIECE_BYTES);
    expect(pieces.length).toBeGreaterThanOrEqual(3);
    expect(all.subarray(0, 65536)).toEqual(head);
    expect(all.subarray(size - 65536)).toEqual(tail);
    expect(all.subarray(65536, size - 65536).every((b) => b === 0)).toBe(true);
  });

  test("HEAD gives the size without a body", async () => {
    const { request, json } = await setup();
    await json("POST", "/v1/images", { name: "h", size: MiB });
    const res = await request("/v1/images/h/data", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe(String(MiB));
  });

  test("the zero route makes a range zero, and the map shows data and holes", async () => {
    const { request, json, put, read } = await setup();
    await json("POST", "/v1/images", { name: "z", size: 2 * MiB });
    await put("z", 0, pattern(MiB, 1));
    await put("z", MiB + 65536, pattern(65536, 2));

    const zero = await request("/v1/images/z/zero?offset=65536&length=131072", { method: "POST" });
    expect(zero.status).toBe(204);
    expect(await read("z", 65536, 131072)).toEqual(new Uint8Array(131072));
    expect(await read("z", 0, 65536)).toEqual(pattern(MiB, 1).subarray(0, 65536));

    const map = (await (await request("/v1/images/z/map")).json()) as MapResponse;
    expect(map).toMatchObject({ size: 2 * MiB, offset: 0, length: 2 * MiB, next: null });
    expect(map.extents).toEqual([
      { offset: 0, length: 65536, hole: false },
      { offset: 65536, length: 131072, hole: true },
      { offset: 196608, length: MiB - 196608, hole: false },
      { offset: MiB, length: 65536, hole: true },
      { offset: MiB + 65536, length: 65536, hole: false },
      { offset: MiB + 131072, length: MiB - 131072, hole: true },
    ]);
    const part = (await (await request("/v1/images/z/map?offset=65536&length=65536")).json()) as MapResponse;
    expect(part.extents).toEqual([{ offset: 65536, length: 65536, hole: true }]);
  });

  test("a snapshot's map and data are readable; writes to it are refused as read_only", async () => {
    const { request, json, put } = await setup();
    await json("POST", "/v1/images", { name: "r", size: MiB });
    await put("r", 0, pattern(65536, 1));
    await json("POST", "/v1/images/r/snapshots", { name: "s" });
    const map = (await (await request("/v1/images/r@s/map")).json()) as MapResponse;
    expect(map.extents[0]).toEqual({ offset: 0, length: 65536, hole: false });

    for (const res of [
      await put("r@s", 0, new Uint8Array(10)),
      await request("/v1/images/r@s/zero?offset=0&length=512", { method: "POST" }),
      await json("PATCH", "/v1/images/r@s", { size: 2 * MiB }),
    ]) {
      expect(res.status).toBe(409);
      expect((await errorOf(res)).code).toBe("read_only");
    }
  });
});

describe("gateway HTTP API: errors have one shape", () => {
  test("404: unknown image, unknown route", async () => {
    const { request } = await setup();
    const img = await request("/v1/images/nope");
    expect(img.status).toBe(404);
    expect((await errorOf(img)).code).toBe("image_not_found");
    for (const path of ["/v1/nothing", "/", "/v1/images/a/b/c"]) {
      const res = await request(path);
      expect(res.status).toBe(404);
      expect((await errorOf(res)).code).toBe("not_found");
    }
  });

  test("409: an image name taken", async () => {
    const { json } = await setup();
    await json("POST", "/v1/images", { name: "dup", size: 512 });
    const res = await json("POST", "/v1/images", { name: "dup", size: 512 });
    expect(res.status).toBe(409);
    const e = await errorOf(res);
    expect(e.code).toBe("image_exists");
    expect(e.message).toContain("dup");
  });

  test("400: bad JSON, bad names, sizes, chunk sizes, offsets and ranges", async () => {
    const { request, json, put } = await setup();
    await json("POST", "/v1/images", { name: "ok", size: MiB });
    const cases: [Promise<Response>, string][] = [
      [request("/v1/images", { method: "POST", body: "{nope" }), "bad_request"],
      [request("/v1/images", { method: "POST", body: "[1]" }), "bad_request"],
      [json("POST", "/v1/images", { name: "../etc", size: 512 }), "bad_request"],
      [json("POST", "/v1/images", { name: "x", size: "1GB" }), "bad_request"], // "1G" is taken; "1GB" is ambiguous
      [json("POST", "/v1/images", { name: "x" }), "bad_request"],
      [json("POST", "/v1/images", { name: "x", size: 1000 }), "out_of_range"],
      [json("POST", "/v1/images", { name: "x", size: 4096, chunkSize: 3000 }), "out_of_range"],
      [json("PATCH", "/v1/images/ok", {}), "bad_request"],
      [json("PATCH", "/v1/images/ok", { size: 2 * MiB + 1 }), "out_of_range"],
      [json("POST", "/v1/images/ok/snapshots", { name: "a/b" }), "bad_request"],
      [request("/v1/images/ok/data", { method: "PUT", body: "x" }), "bad_request"],
      [request("/v1/images/ok/data?offset=-1", { method: "PUT", body: "x" }), "bad_request"],
      [put("ok", MiB - 1, new Uint8Array(2)), "out_of_range"],
      [request("/v1/images/ok/zero?offset=0", { method: "POST" }), "bad_request"],
      [request("/v1/images/ok/map?offset=abc"), "bad_request"],
      [request("/v1/images/ok/map?offset=0&length=99999999"), "out_of_range"],
      [request("/v1/images/ok/data", { headers: { range: "bytes=0-1,5-6" } }), "bad_request"],
      [request("/v1/images/ok/data", { headers: { range: "bytes=9-2" } }), "bad_request"],
      [
        request("/v1/images/ok/data", {
          method: "PUT",
          body: "abc",
          headers: { "content-range": "bytes 0-9/*" },
        }),
        "bad_request",
      ],
    ];
    for (const [pending, code] of cases) {
      const res = await pending;
      expect(res.status).toBe(400);
      expect((await errorOf(res)).code).toBe(code);
    }
  });

  test("416: a range past the end, with Content-Range: bytes */size", async () => {
    const { request, json } = await setup();
    await json("POST", "/v1/images", { name: "e", size: 1024 });
    const res = await request("/v1/images/e/data", { headers: { range: "bytes=1024-" } });
    expect(res.status).toBe(416);
    expect(res.headers.get("content-range")).toBe("bytes */1024");
    expect((await errorOf(res)).code).toBe("range_not_satisfiable");
  });

  test("413: a data body over the limit, and an oversized JSON body", async () => {
    const { request, json } = await setup();
    await json("POST", "/v1/images", { name: "big", size: 128 * MiB });
    const res = await request("/v1/images/big/data?offset=0", {
      method: "PUT",
      body: new Uint8Array(MAX_DATA_BODY_BYTES + 1),
    });
    expect(res.status).toBe(413);
    expect((await errorOf(res)).code).toBe("payload_too_large");
    const bigJson = await json("POST", "/v1/images", { name: "x", size: 512, pad: "x".repeat(100_000) });
    expect(bigJson.status).toBe(413);
    expect((await errorOf(bigJson)).code).toBe("payload_too_large");
  });
});

describe("gateway HTTP API: health, OpenAPI and extension routes", () => {
  test("health answers", async () => {
    const { request } = await setup();
    expect(await (await request("/v1/health")).json()).toEqual({ ok: true, api: 1 });
  });

  test("openapi.json is OpenAPI 3.1 and describes every route the app serves", async () => {
    const { app, request } = await setup();
    const doc = (await (await request("/v1/openapi.json")).json()) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
    };
    expect(doc.openapi).toBe("3.1.0");
    const routes = new Set(
      app.routes
        .filter((r) => r.method !== "ALL")
        .map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`),
    );
    expect(routes.size).toBeGreaterThanOrEqual(14);
    for (const route of routes) {
      const [method, path] = route.split(" ") as [string, string];
      expect(doc.paths[path]?.[method.toLowerCase()], route).toBeDefined();
    }
    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((k) => k !== "parameters")
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(new Set(documented)).toEqual(routes);
  });

  test("routes mounted through the extension point share the error mapping and the document", async () => {
    const { request } = await setup({
      routes: (app) => {
        app.get("/v1/heal", (c) => c.json({ running: false }));
        app.get("/v1/boom", () => {
          throw new RangeError("bad value 7");
        });
      },
      openapiPaths: { "/v1/heal": { get: { summary: "Heal status", responses: {} } } },
    });
    expect(await (await request("/v1/heal")).json()).toEqual({ running: false });
    const boom = await request("/v1/boom");
    expect(boom.status).toBe(400);
    expect(await errorOf(boom)).toEqual({ code: "out_of_range", message: "bad value 7" });
    const doc = (await (await request("/v1/openapi.json")).json()) as { paths: Record<string, unknown> };
    expect(doc.paths["/v1/heal"]).toBeDefined();
    expect(doc.paths["/v1/images"]).toBeDefined();
  });
});
