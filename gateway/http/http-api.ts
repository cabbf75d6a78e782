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
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import pLimit from "p-limit";
import { ImageNotFoundError, ReadOnlyError } from "../errors.ts";
import type { Image } from "../image/image.ts";
import type { ImageService } from "../image/image-service.ts";
import { jsonLimit, limit, noBody } from "./_body-limits.ts";
import { parseContentRange, parseRangeHeader } from "./_byte-range.ts";
import { errorResponse } from "./http-errors.ts";
import {
  DATA_PIECE_BYTES,
  type ImageInfo,
  imageInfo,
  MAX_DATA_BODY_BYTES,
  MAX_MAP_BLOCKS,
  type MapExtent,
  type MapResponse,
  snapshotInfos,
} from "./http-wire.ts";
import { openApiDocument, type PathItem } from "./openapi.ts";
import {
  CreateImageBody,
  MapQuery,
  ResizeBody,
  SnapshotBody,
  valid,
  WriteQuery,
  ZeroQuery,
} from "./schemas.ts";

/** Options of {@link createGatewayApp}. */
export interface GatewayAppOptions {
  /** Mounts more routes (store status, heal, metrics) on the app; they share its error mapping. */
  readonly routes?: (app: Hono) => void;
  /** OpenAPI path items of those routes, merged into `/v1/openapi.json`. */
  readonly openapiPaths?: Record<string, PathItem>;
  /**
   * Middleware in front of every route, before any route runs (`api-access.ts`: Host and
   * Origin rules, bearer tokens, the body deadline); refusals share the error mapping.
   */
  readonly guard?: readonly MiddlewareHandler[];
}

/** Heads read at once when listing images. */
const LIST_CONCURRENCY = 16;

/** `GET /v1`: what a person or a script finds at the API's root, with where to go next. */
const API_INDEX = {
  name: "blockmend",
  api: 1,
  description: "Replicated block storage for VM images: this gateway's HTTP API",
  links: {
    openapi: "/v1/openapi.json",
    health: "/v1/health",
    images: "/v1/images",
    stores: "/v1/stores",
    heal: "/v1/heal",
    gc: "/v1/gc",
    backups: "/v1/backups/jobs",
    events: "/v1/events",
    metrics: "/metrics",
    dashboard: "/",
  },
} as const;

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

  app.use("*", secureHeaders());
  for (const g of options.guard ?? []) app.use("*", g);

  app.get("/v1", (c) => c.json(API_INDEX));
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

  app.post("/v1/images", jsonLimit, valid("json", CreateImageBody), async (c) => {
    const { name, size, chunkSize, from } = c.req.valid("json");
    // A clone is created at its snapshot's size and then grown: ImageService.create keeps the
    // snapshot's root as is, which is wrong once the bigger size needs a taller block map.
    let head = await images.create(name, from ? undefined : size, { chunkSize, from });
    if (from && size !== undefined && size > head.size) {
      await images.withImage(head.name, (image) => image.resize(size));
      head = await images.info(head.name);
    }
    c.header("location", `/v1/images/${head.name}`);
    return c.json(imageInfo(head), 201);
  });

  app.get("/v1/images/:name", async (c) => c.json(imageInfo(await images.info(c.req.param("name")))));

  app.patch("/v1/images/:name", jsonLimit, valid("json", ResizeBody), async (c) => {
    const name = writable(c.req.param("name"));
    const { size } = c.req.valid("json");
    await images.withImage(name, (image) => image.resize(size));
    return c.json(imageInfo(await images.info(name)));
  });

  app.delete("/v1/images/:name", noBody, async (c) => {
    await images.remove(writable(c.req.param("name")));
    return c.body(null, 204);
  });

  // ---- snapshots

  app.get("/v1/images/:name/snapshots", async (c) =>
    c.json({ snapshots: snapshotInfos(await images.info(c.req.param("name"))) }),
  );

  app.post("/v1/images/:name/snapshots", jsonLimit, valid("json", SnapshotBody), async (c) => {
    const name = writable(c.req.param("name"));
    const snap = c.req.valid("json").name;
    const head = await images.snapshot(name, snap);
    c.header("location", `/v1/images/${name}/snapshots/${snap}`);
    return c.json(snapshotInfos(head).find((s) => s.name === snap)!, 201);
  });

  app.delete("/v1/images/:name/snapshots/:snap", noBody, async (c) => {
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

  app.put("/v1/images/:name/data", limit(MAX_DATA_BODY_BYTES), valid("query", WriteQuery), async (c) => {
    const name = writable(c.req.param("name"));
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    const offset = writeOffset(c, c.req.valid("query").offset, bytes.byteLength);
    await images.withImage(name, (image) => image.write(offset, bytes, { fua: true }));
    return c.body(null, 204);
  });

  app.post("/v1/images/:name/zero", noBody, valid("query", ZeroQuery), async (c) => {
    const name = writable(c.req.param("name"));
    const { offset, length } = c.req.valid("query");
    await images.withImage(name, (image) =>
      image.writeZeroes(offset, length, { fua: true, noHole: false, fastZero: false }),
    );
    return c.body(null, 204);
  });

  app.get("/v1/images/:name/map", valid("query", MapQuery), async (c) => {
    const { offset, length } = c.req.valid("query");
    const image = await images.open(c.req.param("name"));
    try {
      return c.json(await mapOf(image, offset, length));
    } finally {
      await images.release(image);
    }
  });

  options.routes?.(app);
  return app;
}

// ---------------------------------------------------------------------------
// Helpers.

/** The name of a writable image: a snapshot (`image@snap`) is read-only. */
function writable(name: string): string {
  if (name.includes("@")) throw new ReadOnlyError(name);
  return name;
}

/** The offset of a data write: `?offset=N`, or `Content-Range: bytes a-b/*` matching the body length. */
function writeOffset(c: Context, offset: number | undefined, length: number): number {
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
