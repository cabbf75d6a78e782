/**
 * The gateway's HTTP API: the control path (images, snapshots, clones) and bulk image
 * data for import and export. A Hono app; serve its `fetch` with `runtime/serve-http.ts`.
 * Wire shapes and error codes are in `http-wire.ts`, the document in `openapi.ts`.
 *
 * Routes (errors are `{"error":{"code","message"}}`, mapped in `http-errors.ts`):
 *
 *   GET    /v1/health                          {"ok":true,"api":1}
 *   GET    /v1/openapi.json                    OpenAPI 3.1 document
 *   GET    /v1/images                          {"images":[ImageInfo...]}
 *   POST   /v1/images                          {"name","size","chunkSize"?,"from"?} -> 201 ImageInfo
 *   GET    /v1/images/{name}                   ImageInfo
 *   PATCH  /v1/images/{name}                   {"size"} grows -> ImageInfo
 *   DELETE /v1/images/{name}                   204
 *   GET    /v1/images/{name}/snapshots         {"snapshots":[SnapshotInfo...]}
 *   POST   /v1/images/{name}/snapshots         {"name"} -> 201 SnapshotInfo
 *   DELETE /v1/images/{name}/snapshots/{snap}  204
 *   GET    /v1/images/{name}/data              bytes; Range -> 206; `name@snap` allowed
 *   PUT    /v1/images/{name}/data?offset=N     bytes at N (or Content-Range), flushed -> 204
 *   POST   /v1/images/{name}/zero?offset&length  zero (holes), flushed -> 204
 *   GET    /v1/images/{name}/map?offset&length {"size","offset","length","extents","next"}
 *
 * Every request that touches image data opens the image through the ImageService, so
 * it shares the open image (and its cache) with NBD clients of this gateway.
 */
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import pLimit from "p-limit";
import { ImageNotFoundError, ReadOnlyError } from "../errors.ts";
import { assertImageName, assertImageSize } from "../image/head.ts";
import type { Image } from "../image/image.ts";
import type { ImageService } from "../image/image-service.ts";
import { parseContentRange, parseRangeHeader } from "./_byte-range.ts";
import { errorResponse } from "./http-errors.ts";
import {
  DATA_PIECE_BYTES,
  type ImageInfo,
  imageInfo,
  MAX_DATA_BODY_BYTES,
  MAX_JSON_BYTES,
  MAX_MAP_BLOCKS,
  type MapExtent,
  type MapResponse,
  snapshotInfos,
} from "./http-wire.ts";
import { openApiDocument, type PathItem } from "./openapi.ts";

/** Options of {@link createGatewayApp}. */
export interface GatewayAppOptions {
  /** Mounts more routes (store status, heal, metrics) on the app; they share its error mapping. */
  readonly routes?: (app: Hono) => void;
  /** OpenAPI path items of those routes, merged into `/v1/openapi.json`. */
  readonly openapiPaths?: Record<string, PathItem>;
}

/** Heads read at once when listing images. */
const LIST_CONCURRENCY = 16;

/**
 * Builds the HTTP API over `images`. The app never closes the service.
 *
 * @example
 * const app = createGatewayApp(images, { routes: (app) => app.get("/v1/heal", ...) });
 * const server = await serveHttp(app.fetch, { hostname: "127.0.0.1", port: 8080 });
 */
export function createGatewayApp(images: ImageService, options: GatewayAppOptions = {}): Hono {
  const app = new Hono();
  const openapi = openApiDocument(options.openapiPaths);

  app.onError((err, c) => errorResponse(c, err));
  app.notFound((c) =>
    errorResponse(
      c,
      new HTTPException(404, { message: `No route ${c.req.method} ${new URL(c.req.url).pathname}` }),
    ),
  );

  const jsonLimit = limit(MAX_JSON_BYTES);

  app.get("/v1/health", (c) => c.json({ ok: true, api: 1 }));
  app.get("/v1/openapi.json", (c) => c.json(openapi));

  // ---- images

  app.get("/v1/images", async (c) => {
    const read = pLimit(LIST_CONCURRENCY);
    const infos = await Promise.all(
      (await images.list()).map((name) =>
        read(() =>
          images.info(name).then(imageInfo, (err) => {
            if (err instanceof ImageNotFoundError) return null; // deleted meanwhile
            throw err;
          }),
        ),
      ),
    );
    return c.json({ images: infos.filter((i): i is ImageInfo => i !== null) });
  });

  app.post("/v1/images", jsonLimit, async (c) => {
    const body = await readJson(c);
    const from = optional(body, "from", "string");
    const size = optional(body, "size", "number");
    // A clone is created at its snapshot's size and then grown: ImageService.create keeps the
    // snapshot's root as is, which is wrong once the bigger size needs a taller block map.
    let head = await images.create(body.name as string, from ? undefined : size, {
      chunkSize: optional(body, "chunkSize", "number"),
      from,
    });
    if (from && size !== undefined && size > head.size) {
      assertImageSize(size);
      await images.withImage(head.name, (image) => image.resize(size));
      head = await images.info(head.name);
    }
    c.header("location", `/v1/images/${head.name}`);
    return c.json(imageInfo(head), 201);
  });

  app.get("/v1/images/:name", async (c) => c.json(imageInfo(await images.info(c.req.param("name")))));

  app.patch("/v1/images/:name", jsonLimit, async (c) => {
    const name = writable(c.req.param("name"));
    const size = optional(await readJson(c), "size", "number");
    if (size === undefined) throw new TypeError('Expected a JSON body {"size": bytes}');
    assertImageSize(size);
    await images.withImage(name, (image) => image.resize(size));
    return c.json(imageInfo(await images.info(name)));
  });

  app.delete("/v1/images/:name", async (c) => {
    await images.remove(writable(c.req.param("name")));
    return c.body(null, 204);
  });

  // ---- snapshots

  app.get("/v1/images/:name/snapshots", async (c) =>
    c.json({ snapshots: snapshotInfos(await images.info(c.req.param("name"))) }),
  );

  app.post("/v1/images/:name/snapshots", jsonLimit, async (c) => {
    const name = writable(c.req.param("name"));
    const snap = (await readJson(c)).name;
    assertImageName(snap, "snapshot");
    const head = await images.snapshot(name, snap);
    c.header("location", `/v1/images/${name}/snapshots/${snap}`);
    return c.json(snapshotInfos(head).find((s) => s.name === snap)!, 201);
  });

  app.delete("/v1/images/:name/snapshots/:snap", async (c) => {
    await images.deleteSnapshot(writable(c.req.param("name")), c.req.param("snap"));
    return c.body(null, 204);
  });

  // ---- data

  // Hono answers HEAD with this handler too (the body is dropped); it sends headers only.
  app.get("/v1/images/:name/data", async (c) => {
    const image = await images.open(c.req.param("name"));
    let handedOver = false;
    try {
      const range = parseRangeHeader(c.req.header("range"), image.size);
      const start = range?.start ?? 0;
      const end = range?.end ?? image.size;
      const headers: Record<string, string> = {
        "content-type": "application/octet-stream",
        "content-length": String(end - start),
        "accept-ranges": "bytes",
      };
      if (range) headers["content-range"] = `bytes ${start}-${end - 1}/${image.size}`;
      const status = range ? 206 : 200;
      if (c.req.method === "HEAD") return c.body(null, status, headers);
      const body = readStream(image, start, end, () => images.release(image));
      handedOver = true;
      return c.body(body, status, headers);
    } finally {
      if (!handedOver) await images.release(image);
    }
  });

  app.put("/v1/images/:name/data", limit(MAX_DATA_BODY_BYTES), async (c) => {
    const name = writable(c.req.param("name"));
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    const offset = writeOffset(c, bytes.byteLength);
    await images.withImage(name, (image) => image.write(offset, bytes, { fua: true }));
    return c.body(null, 204);
  });

  app.post("/v1/images/:name/zero", async (c) => {
    const name = writable(c.req.param("name"));
    const offset = queryInt(c, "offset", true);
    const length = queryInt(c, "length", true);
    await images.withImage(name, (image) =>
      image.writeZeroes(offset, length, { fua: true, noHole: false, fastZero: false }),
    );
    return c.body(null, 204);
  });

  app.get("/v1/images/:name/map", async (c) => {
    const image = await images.open(c.req.param("name"));
    try {
      return c.json(await mapOf(image, queryInt(c, "offset", false), queryInt(c, "length", false)));
    } finally {
      await images.release(image);
    }
  });

  options.routes?.(app);
  return app;
}

// ---------------------------------------------------------------------------
// Helpers.

/** Body limit for one route; overflow becomes a 413 through the one error mapping. */
function limit(maxSize: number): MiddlewareHandler {
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new HTTPException(413, { message: `Request body is larger than ${maxSize} bytes` });
    },
  });
}

/** The request body as a JSON object; anything else is a TypeError (400). */
async function readJson(c: Context): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch (e) {
    throw new TypeError(`Request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new TypeError("Request body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

/** `body[key]` if present, checked to be of `type`. */
function optional<T extends "string" | "number">(
  body: Record<string, unknown>,
  key: string,
  type: T,
): (T extends "string" ? string : number) | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== type) throw new TypeError(`"${key}" must be a ${type}; got ${JSON.stringify(value)}`);
  return value as T extends "string" ? string : number;
}

/** A non-negative integer query parameter; `required` false gives undefined when absent. */
function queryInt(c: Context, key: string, required: true): number;
function queryInt(c: Context, key: string, required: false): number | undefined;
function queryInt(c: Context, key: string, required: boolean): number | undefined {
  const raw = c.req.query(key);
  if (raw === undefined) {
    if (required) throw new TypeError(`Query parameter "${key}" is required`);
    return undefined;
  }
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n)) {
    throw new TypeError(`Query parameter "${key}"=${JSON.stringify(raw)} is not a non-negative integer`);
  }
  return n;
}

/** The name of a writable image: a snapshot (`image@snap`) is read-only. */
function writable(name: string): string {
  if (name.includes("@")) throw new ReadOnlyError(name);
  return name;
}

/** The offset of a data write: `?offset=N`, or `Content-Range: bytes a-b/*` matching the body length. */
function writeOffset(c: Context, length: number): number {
  const offset = queryInt(c, "offset", false);
  const header = c.req.header("content-range");
  if (offset !== undefined && header !== undefined) {
    throw new TypeError("Give the write offset as ?offset=N or as Content-Range, not both");
  }
  if (header === undefined) {
    if (offset === undefined) throw new TypeError("A data write needs ?offset=N or a Content-Range header");
    return offset;
  }
  const range = parseContentRange(header);
  if (range.end - range.start !== length) {
    throw new TypeError(
      `Content-Range "${header}" covers ${range.end - range.start} bytes; the body has ${length}`,
    );
  }
  return range.start;
}

/**
 * Streams `[start, end)` of `image` in DATA_PIECE_BYTES pieces, read as the client
 * consumes them (never the whole range in memory); `done` runs once at the end, on
 * error or when the client goes away.
 */
function readStream(
  image: Image,
  start: number,
  end: number,
  done: () => Promise<void>,
): ReadableStream<Uint8Array> {
  let pos = start;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    done().catch((err) => console.error(`gateway HTTP API: releasing image "${image.name}" failed`, err));
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (pos < end) {
          const n = Math.min(DATA_PIECE_BYTES, end - pos);
          controller.enqueue(await image.read(pos, n));
          pos += n;
        }
        if (pos >= end) {
          finish();
          controller.close();
        }
      } catch (err) {
        // The status line is gone already: the client sees a short body.
        console.error(`gateway HTTP API: reading image "${image.name}" at ${pos} failed`, err);
        finish();
        controller.error(err);
      }
    },
    cancel: finish,
  });
}

/** The allocation map of a range (default: to the end), clipped to MAX_MAP_BLOCKS blocks. */
async function mapOf(image: Image, offset = 0, length?: number): Promise<MapResponse> {
  if (offset > image.size) {
    throw new RangeError(
      `Map offset ${offset} is past the end of image "${image.name}" (${image.size} bytes)`,
    );
  }
  const wanted = length ?? image.size - offset;
  // Clip at a block boundary so the next answer starts aligned.
  const cap = (Math.floor(offset / image.chunkSize) + MAX_MAP_BLOCKS) * image.chunkSize - offset;
  const n = Math.min(wanted, cap);
  const extents: MapExtent[] = [];
  let pos = offset;
  for (const e of n > 0 ? await image.blockStatus(offset, n) : []) {
    extents.push({ offset: pos, length: e.length, hole: e.hole });
    pos += e.length;
  }
  return { size: image.size, offset, length: n, extents, next: n < wanted ? offset + n : null };
}
