/**
 * Wire vocabulary of the gateway's HTTP API (`/v1`), shared by the server
 * (`http-api.ts`), its OpenAPI document (`openapi.ts`) and the CLI client
 * (`cli/gateway-client.ts`): JSON shapes, error codes and body limits.
 *
 * Error codes are part of the API (scripts match on them): add, never rename.
 * Every error response is `{"error": {"code": API_ERROR, "message": string}}`.
 */
import type { Head } from "../image/head.ts";

/** Stable `error.code` values; the comment gives the HTTP status each travels with. */
export const API_ERROR = {
  /** 400: malformed JSON, parameter or header (a TypeError in the gateway). */
  BAD_REQUEST: "bad_request",
  /** 400: a value out of range: size, offset, chunk size (a RangeError in the gateway). */
  OUT_OF_RANGE: "out_of_range",
  /** 401: no bearer token, or one this gateway does not know (`access/`, `--token-file`). */
  UNAUTHORIZED: "unauthorized",
  /** 403: a status token (`--status-token-file`) on a route that needs a full token. */
  FORBIDDEN_SCOPE: "forbidden_scope",
  /** 403: a `Host` that is none of the gateway's names (DNS rebinding; `--public-name`). */
  FORBIDDEN_HOST: "forbidden_host",
  /** 403: a state-changing request from another web origin. */
  FORBIDDEN_ORIGIN: "forbidden_origin",
  /** 403: a state-changing request with a body type browsers send cross-site (text/plain, forms). */
  FORBIDDEN_CONTENT_TYPE: "forbidden_content_type",
  /** 404: no such route. */
  NOT_FOUND: "not_found",
  /** 408: the request body did not arrive in time (slow-drip client). */
  REQUEST_TIMEOUT: "request_timeout",
  /** 404: no such image or snapshot. */
  IMAGE_NOT_FOUND: "image_not_found",
  /** 409: an image (or snapshot) of that name exists already. */
  IMAGE_EXISTS: "image_exists",
  /** 409: a write to a snapshot (`image@snap`) or another read-only view. */
  READ_ONLY: "read_only",
  /** 409: another gateway took the image over (it wrote to it since); this one may not commit. */
  STALE_EPOCH: "stale_epoch",
  /** 409: the image this request was for was deleted (and perhaps re-created: another incarnation). */
  IMAGE_DELETED: "image_deleted",
  /** 413: body over the route's limit. */
  PAYLOAD_TOO_LARGE: "payload_too_large",
  /** 416: a `Range` that starts past the end of the image. */
  RANGE_NOT_SATISFIABLE: "range_not_satisfiable",
  /** 503: fewer stores than `minReplicas` (or no head majority) accepted a write or answered a read. */
  NOT_ENOUGH_REPLICAS: "not_enough_replicas",
  /** 503: no majority of the head holders answered (the register is unavailable). */
  REGISTER_UNAVAILABLE: "register_unavailable",
  /** 404: no such store. */
  STORE_NOT_FOUND: "store_not_found",
  /** 503: a store could not be reached. */
  STORE_UNAVAILABLE: "store_unavailable",
  /** 503: no replica could serve a chunk (missing or corrupt everywhere that answered). */
  CHUNK_UNAVAILABLE: "chunk_unavailable",
  /** 503: as many event streams (`/v1/events`) are open as the gateway allows; retry later. */
  TOO_MANY_STREAMS: "too_many_streams",
  /** 507: a store is full; nothing was committed. */
  STORE_FULL: "store_full",
  /** 500: anything else (a bug); the gateway logs it. */
  INTERNAL: "internal",
} as const;

export type ApiErrorCode = (typeof API_ERROR)[keyof typeof API_ERROR];

/** The JSON body of every error response. */
export interface ApiErrorBody {
  readonly error: { readonly code: ApiErrorCode; readonly message: string };
}

/** Largest JSON request body: image and snapshot requests are a few hundred bytes. */
export const MAX_JSON_BYTES = 64 * 1024;

/** Largest `PUT .../data` body: bounds gateway memory per request; clients send 4 MiB pieces. */
export const MAX_DATA_BODY_BYTES = 64 * 1024 * 1024;

/** Piece size of streamed reads and of the CLI's uploads and downloads: a few chunks, little memory. */
export const DATA_PIECE_BYTES = 4 * 1024 * 1024;

/**
 * Largest range one `GET .../map` answers: 2^20 blocks (64 GiB at the default 64 KiB
 * chunk size) keeps one answer well under a second; `next` says where to continue.
 */
export const MAX_MAP_BLOCKS = 1024 * 1024;

/** A snapshot as the API shows it. */
export interface SnapshotInfo {
  readonly name: string;
  readonly size: number;
  readonly generation: number;
  readonly root: string;
  readonly createdAt: string;
}

/** An image as the API shows it (`GET /v1/images/{name}`). */
export interface ImageInfo {
  readonly name: string;
  readonly size: number;
  readonly chunkSize: number;
  readonly generation: number;
  readonly epoch: number;
  /** The gateway that owns it (the last one to write), or null. */
  readonly owner: string | null;
  readonly incarnation: string;
  readonly root: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly clonedFrom: string | null;
  /** Per data store id: the last version that store holds in full, and for which store identity. */
  readonly synced: Readonly<
    Record<string, { readonly generation: number; readonly root: string; readonly identity: string }>
  >;
  /** Oldest first. */
  readonly snapshots: readonly SnapshotInfo[];
}

/** One run of `GET .../map`: allocated data, or a hole that reads as zeroes. */
export interface MapExtent {
  readonly offset: number;
  readonly length: number;
  readonly hole: boolean;
}

/** The answer of `GET /v1/images/{name}/map`. */
export interface MapResponse {
  /** Size of the image (or snapshot) in bytes. */
  readonly size: number;
  /** The range covered by `extents`: the request, clipped to the image and to MAX_MAP_BLOCKS. */
  readonly offset: number;
  readonly length: number;
  readonly extents: readonly MapExtent[];
  /** Where to ask next when the requested range was clipped, else null. */
  readonly next: number | null;
}

/** Snapshots of a head, oldest first. */
export function snapshotInfos(head: Head): SnapshotInfo[] {
  return Object.entries(head.snapshots)
    .map(([name, s]) => ({
      name,
      size: s.size,
      generation: s.generation,
      root: s.root,
      createdAt: s.createdAt,
    }))
    .sort((a, b) => a.generation - b.generation || a.name.localeCompare(b.name));
}

/** The API view of a head. */
export function imageInfo(head: Head): ImageInfo {
  return {
    name: head.name,
    size: head.size,
    chunkSize: head.chunkSize,
    generation: head.generation,
    epoch: head.epoch,
    owner: head.owner,
    incarnation: head.incarnation,
    root: head.root,
    createdAt: head.createdAt,
    updatedAt: head.updatedAt,
    clonedFrom: head.clonedFrom ?? null,
    synced: head.synced,
    snapshots: snapshotInfos(head),
  };
}
