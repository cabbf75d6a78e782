/**
 * The OpenAPI 3.1 document of the gateway's HTTP API, served at `GET /v1/openapi.json`.
 * Hand-written to match `http-api.ts`; a test checks that every route the app registers
 * is described here.
 */
import { DATA_PIECE_BYTES, MAX_DATA_BODY_BYTES, MAX_MAP_BLOCKS } from "./http-wire.ts";

/** An OpenAPI path item (`{get: {...}, post: {...}}`), loosely typed. */
export type PathItem = Record<string, unknown>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ "application/json": { schema } });
const ok = (description: string, schema?: unknown) =>
  schema ? { description, content: json(schema) } : { description };
const err = (description: string) => ({ description, content: json(ref("Error")) });

const nameParam = {
  name: "name",
  in: "path",
  required: true,
  description: "Image name (1-128 of A-Z a-z 0-9 . _ -)",
  schema: { type: "string" },
};
const readNameParam = {
  ...nameParam,
  description: "Image name, or `image@snapshot` for a read-only snapshot",
};
const intQuery = (name: string, description: string, required = false) => ({
  name,
  in: "query",
  required,
  description,
  schema: { type: "integer", minimum: 0 },
});

const common = {
  "400": err("Malformed request (`bad_request`) or a value out of range (`out_of_range`)"),
  "404": err("No such image or snapshot (`image_not_found`)"),
  "503": err("Not enough stores answered (`not_enough_replicas`, `store_unavailable`, `chunk_unavailable`)"),
};
const writeErrors = {
  ...common,
  "409": err("Read-only snapshot (`read_only`) or fenced by another gateway (`stale_epoch`)"),
  "507": err("A store is full (`store_full`)"),
};

const schemas = {
  Error: {
    type: "object",
    required: ["error"],
    properties: {
      error: {
        type: "object",
        required: ["code", "message"],
        properties: { code: { type: "string" }, message: { type: "string" } },
      },
    },
  },
  Snapshot: {
    type: "object",
    required: ["name", "size", "generation", "root", "createdAt"],
    properties: {
      name: { type: "string" },
      size: { type: "integer" },
      generation: { type: "integer" },
      root: { type: "string", description: "BLAKE3 root hash of the frozen block map" },
      createdAt: { type: "string", format: "date-time" },
    },
  },
  Image: {
    type: "object",
    required: ["name", "size", "chunkSize", "generation", "epoch", "root", "synced", "snapshots"],
    properties: {
      name: { type: "string" },
      size: { type: "integer", description: "Bytes, a multiple of 512" },
      chunkSize: { type: "integer", description: "Power of two from 4096 to 4194304" },
      generation: { type: "integer", description: "Bumped on every commit" },
      epoch: { type: "integer", description: "Owner epoch (fencing)" },
      root: { type: "string" },
      createdAt: { type: "string", format: "date-time" },
      synced: {
        type: "object",
        description: "Per data store id: the last version it holds in full",
        additionalProperties: {
          type: "object",
          properties: { generation: { type: "integer" }, root: { type: "string" } },
        },
      },
      snapshots: { type: "array", items: ref("Snapshot") },
    },
  },
  Map: {
    type: "object",
    required: ["size", "offset", "length", "extents", "next"],
    properties: {
      size: { type: "integer" },
      offset: { type: "integer" },
      length: { type: "integer" },
      extents: {
        type: "array",
        items: {
          type: "object",
          required: ["offset", "length", "hole"],
          properties: { offset: { type: "integer" }, length: { type: "integer" }, hole: { type: "boolean" } },
        },
      },
      next: { type: ["integer", "null"], description: "Offset to continue from when the range was clipped" },
    },
  },
};

const paths: Record<string, PathItem> = {
  "/v1": {
    get: {
      summary: "An index of the API: its name, version and links to the main routes",
      responses: { "200": ok("{name, api, description, links}", { type: "object" }) },
    },
  },
  "/v1/health": {
    get: { summary: "Liveness", responses: { "200": ok("The gateway is serving", { type: "object" }) } },
  },
  "/v1/openapi.json": {
    get: { summary: "This document", responses: { "200": ok("OpenAPI 3.1 document", { type: "object" }) } },
  },
  "/v1/images": {
    get: {
      summary: "List images",
      responses: {
        "200": ok("Every image", {
          type: "object",
          properties: { images: { type: "array", items: ref("Image") } },
        }),
        "503": common["503"],
      },
    },
    post: {
      summary: "Create an image, or clone a snapshot (`from`)",
      requestBody: {
        required: true,
        content: json({
          type: "object",
          required: ["name"],
          properties: {
            name: { type: "string" },
            size: {
              oneOf: [{ type: "integer" }, { type: "string" }],
              description:
                'Bytes, a multiple of 512 (or text: "10G", "10GiB"; K M G T P are powers of 1024, "10GB" is refused); for a clone at least the snapshot\'s',
            },
            chunkSize: { type: "integer", description: "Default 65536" },
            from: { type: "string", description: "Clone source `image@snapshot`" },
          },
        }),
      },
      responses: {
        "201": ok("Created", ref("Image")),
        "409": err("Name taken (`image_exists`)"),
        "507": writeErrors["507"],
        ...common,
      },
    },
  },
  "/v1/images/{name}": {
    parameters: [nameParam],
    get: { summary: "Image info", responses: { "200": ok("The image", ref("Image")), ...common } },
    patch: {
      summary: "Grow an image",
      requestBody: {
        required: true,
        content: json({
          type: "object",
          required: ["size"],
          properties: {
            size: { oneOf: [{ type: "integer" }, { type: "string" }], description: 'Bytes, or text ("20G")' },
          },
        }),
      },
      responses: { "200": ok("Grown", ref("Image")), ...writeErrors },
    },
    delete: {
      summary: "Delete an image (its chunks stay until garbage collection)",
      responses: { "204": ok("Deleted"), ...common },
    },
  },
  "/v1/images/{name}/snapshots": {
    parameters: [nameParam],
    get: {
      summary: "List snapshots, oldest first",
      responses: {
        "200": ok("Snapshots", {
          type: "object",
          properties: { snapshots: { type: "array", items: ref("Snapshot") } },
        }),
        ...common,
      },
    },
    post: {
      summary: "Flush and snapshot the image",
      requestBody: {
        required: true,
        content: json({ type: "object", required: ["name"], properties: { name: { type: "string" } } }),
      },
      responses: {
        "201": ok("Created", ref("Snapshot")),
        ...writeErrors,
        "409": err("Snapshot name taken (`image_exists`), fenced (`stale_epoch`)"),
      },
    },
  },
  "/v1/images/{name}/snapshots/{snap}": {
    parameters: [nameParam, { name: "snap", in: "path", required: true, schema: { type: "string" } }],
    delete: { summary: "Delete a snapshot", responses: { "204": ok("Deleted"), ...writeErrors } },
  },
  "/v1/images/{name}/data": {
    get: {
      summary: `Read bytes; without Range the whole image is streamed in pieces of ${DATA_PIECE_BYTES} bytes`,
      parameters: [
        readNameParam,
        {
          name: "Range",
          in: "header",
          required: false,
          description: "One range: `bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX`",
          schema: { type: "string" },
        },
      ],
      responses: {
        "200": { description: "The whole image", content: { "application/octet-stream": {} } },
        "206": { description: "The range (see Content-Range)", content: { "application/octet-stream": {} } },
        "416": err("Range starts past the end (`range_not_satisfiable`)"),
        ...common,
      },
    },
    put: {
      summary: "Write bytes at an offset; durable (flushed) before the answer",
      parameters: [
        nameParam,
        intQuery("offset", "Byte offset (or send Content-Range: bytes FIRST-LAST/*)"),
        { name: "Content-Range", in: "header", required: false, schema: { type: "string" } },
      ],
      requestBody: {
        required: true,
        description: `At most ${MAX_DATA_BODY_BYTES} bytes`,
        content: { "application/octet-stream": {} },
      },
      responses: {
        "204": ok("Written and flushed"),
        "413": err(`Body over ${MAX_DATA_BODY_BYTES} bytes (\`payload_too_large\`)`),
        ...writeErrors,
      },
    },
  },
  "/v1/images/{name}/zero": {
    post: {
      summary: "Zero a range (whole chunks become holes); durable before the answer",
      parameters: [nameParam, intQuery("offset", "Byte offset", true), intQuery("length", "Bytes", true)],
      responses: { "204": ok("Zeroed and flushed"), ...writeErrors },
    },
  },
  "/v1/images/{name}/map": {
    get: {
      summary: `Allocation map: data and holes (at most ${MAX_MAP_BLOCKS} chunks per answer; follow \`next\`)`,
      parameters: [
        readNameParam,
        intQuery("offset", "Start, default 0"),
        intQuery("length", "Bytes, default to the end of the image"),
      ],
      responses: { "200": ok("Extents", ref("Map")), ...common },
    },
  },
};

/**
 * The OpenAPI 3.1 document, with `extraPaths` (routes mounted through the app's
 * `routes` option) merged in.
 */
export function openApiDocument(extraPaths: Record<string, PathItem> = {}): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: {
      title: "blockmend gateway",
      version: "1",
      description:
        'Images, snapshots, clones and image data of a blockmend gateway. Every error is {"error":{"code","message"}}.',
    },
    paths: { ...paths, ...extraPaths },
    components: { schemas },
  };
}

/** Path items of several route files together: the methods of a path two of them share are merged. */
export function mergePaths(...sets: Record<string, PathItem>[]): Record<string, PathItem> {
  const out: Record<string, PathItem> = {};
  for (const set of sets)
    for (const [path, item] of Object.entries(set)) out[path] = { ...out[path], ...item };
  return out;
}
