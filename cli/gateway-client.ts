/**
 * A small typed client of the gateway's HTTP API (`gateway/http-api.ts`) for the CLI.
 * Every failure is a {@link GatewayError} whose message names the request, the API URL
 * and the server's own error message.
 */

import type { GcReport } from "../gateway/gc/collector.ts";
import type { StoreHealAnswer, StoresAnswer } from "../gateway/heal/cluster-status.ts";
import type { SafeToRemove } from "../gateway/heal/safe-to-remove.ts";
import type { ApiErrorBody, ImageInfo, MapResponse, SnapshotInfo } from "../gateway/http/http-wire.ts";
import { type Fetch, fetchErrorDetail, fetchTrusting } from "../runtime/tls-fetch.ts";

/** The API URL when neither `--api` nor BLOCKMEND_API is given. */
export const DEFAULT_API_URL = "http://127.0.0.1:8080";

/** The API URL to use: the flag, else $BLOCKMEND_API, else {@link DEFAULT_API_URL}. */
export function apiUrl(flag?: string): string {
  return (flag || process.env.BLOCKMEND_API || DEFAULT_API_URL).replace(/\/+$/, "");
}

/** A failed API call: unreachable gateway (`status` 0) or an error answer. */
export class GatewayError extends Error {
  override readonly name = "GatewayError";
  /** HTTP status; 0 when the gateway could not be reached. */
  readonly status: number;
  /** The server's `error.code`, when it sent one. */
  readonly code: string | undefined;

  constructor(message: string, status: number, code?: string, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.code = code;
  }
}

/** Calls one gateway's HTTP API. */
export class GatewayClient {
  readonly url: string;
  readonly #fetch: Fetch;
  readonly #authorization: string | undefined;

  /**
   * @param url Base URL of the gateway, for example `http://127.0.0.1:8080`.
   * @param options `token`: sent as `Authorization: Bearer`; `ca`: PEM the `https://` gateway's certificate must chain to.
   */
  constructor(url: string, options: { token?: string; ca?: string } = {}) {
    this.url = url.replace(/\/+$/, "");
    this.#fetch = fetchTrusting(options.ca);
    this.#authorization = options.token === undefined ? undefined : `Bearer ${options.token}`;
  }

  /** Creates an image (or a clone with `from: "image@snapshot"`). */
  createImage(name: string, size: number | undefined, options: { chunkSize?: number; from?: string } = {}) {
    return this.#json<ImageInfo>("POST", "/v1/images", { name, size, ...options });
  }

  async listImages(): Promise<ImageInfo[]> {
    return (await this.#json<{ images: ImageInfo[] }>("GET", "/v1/images")).images;
  }

  info(name: string): Promise<ImageInfo> {
    return this.#json<ImageInfo>("GET", `/v1/images/${enc(name)}`);
  }

  /** The image's info, or null if it does not exist. */
  async infoIfExists(name: string): Promise<ImageInfo | null> {
    try {
      return await this.info(name);
    } catch (err) {
      if (err instanceof GatewayError && err.status === 404) return null;
      throw err;
    }
  }

  async removeImage(name: string): Promise<void> {
    await this.#call("DELETE", `/v1/images/${enc(name)}`);
  }

  resize(name: string, size: number): Promise<ImageInfo> {
    return this.#json<ImageInfo>("PATCH", `/v1/images/${enc(name)}`, { size });
  }

  createSnapshot(name: string, snapshot: string): Promise<SnapshotInfo> {
    return this.#json<SnapshotInfo>("POST", `/v1/images/${enc(name)}/snapshots`, { name: snapshot });
  }

  async removeSnapshot(name: string, snapshot: string): Promise<void> {
    await this.#call("DELETE", `/v1/images/${enc(name)}/snapshots/${enc(snapshot)}`);
  }

  /** `GET /v1/heal`: heal progress per store. */
  /** Starts a garbage collection pass; with `wait`, resolves with it finished. */
  startGc(graceSeconds: number | undefined, wait: boolean): Promise<GcReport> {
    return this.#json<GcReport>(
      "POST",
      `/v1/gc${wait ? "?wait=1" : ""}`,
      graceSeconds === undefined ? {} : { graceSeconds },
    );
  }

  gcStatus(): Promise<{ running: GcReport | null; last: GcReport | null }> {
    return this.#json("GET", "/v1/gc");
  }

  healStatus(): Promise<HealStatusBody> {
    return this.#json<HealStatusBody>("GET", "/v1/heal");
  }

  /** `GET /v1/stores/{id}/safe-to-remove`. */
  safeToRemove(id: string): Promise<SafeToRemoveBody> {
    return this.#json<SafeToRemoveBody>("GET", `/v1/stores/${enc(id)}/safe-to-remove`);
  }

  /** `GET /v1/stores`. */
  stores(): Promise<StoresAnswer> {
    return this.#json("GET", "/v1/stores");
  }

  /** `POST /v1/stores`: adds a data store. */
  addStore(id: string, url: string): Promise<LifecycleAnswer> {
    return this.#json("POST", "/v1/stores", { id, url });
  }

  /** `POST` (start) or `DELETE` (cancel) `/v1/stores/{id}/drain`. */
  drainStore(id: string, on: boolean): Promise<LifecycleAnswer> {
    return this.#json(on ? "POST" : "DELETE", `/v1/stores/${enc(id)}/drain`);
  }

  /** `DELETE /v1/stores/{id}`: removes a drained store. */
  removeStore(
    id: string,
  ): Promise<LifecycleAnswer & { headsUpdated: number; registerKeysRewritten: number }> {
    return this.#json("DELETE", `/v1/stores/${enc(id)}`);
  }

  /** `PUT /v1/stores/{id}/maintenance`. */
  setMaintenance(
    id: string,
    on: boolean,
  ): Promise<{ store: string; maintenance: boolean; headsStamped: number }> {
    return this.#json("PUT", `/v1/stores/${enc(id)}/maintenance`, { on });
  }

  /** Writes `bytes` at `offset`; durable when it resolves. */
  async write(name: string, offset: number, bytes: Uint8Array): Promise<void> {
    await this.#call("PUT", `/v1/images/${enc(name)}/data?offset=${offset}`, {
      body: bytes as Uint8Array<ArrayBuffer>,
      headers: { "content-type": "application/octet-stream" },
    });
  }

  /** Zeroes `[offset, offset+length)`; durable when it resolves. */
  async zero(name: string, offset: number, length: number): Promise<void> {
    await this.#call("POST", `/v1/images/${enc(name)}/zero?offset=${offset}&length=${length}`);
  }

  /** Reads `length` bytes at `offset` of `name` (`image@snapshot` allowed). */
  async read(name: string, offset: number, length: number): Promise<Uint8Array> {
    const res = await this.#call("GET", `/v1/images/${enc(name)}/data`, {
      headers: { range: `bytes=${offset}-${offset + length - 1}` },
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (res.status !== 206 || bytes.byteLength !== length) {
      throw new GatewayError(
        `GET ${this.url}/v1/images/${name}/data: asked for ${length} bytes at ${offset}, got ${bytes.byteLength} (status ${res.status})`,
        res.status,
      );
    }
    return bytes;
  }

  /** The allocation map from `offset` (one answer; follow `next`). */
  map(name: string, offset = 0): Promise<MapResponse> {
    return this.#json<MapResponse>("GET", `/v1/images/${enc(name)}/map?offset=${offset}`);
  }

  /** One JSON request to any route (the commands whose routes have no method here: backups). */
  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.#json<T>(method, path, body);
  }

  async #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const init =
      body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { "content-type": "application/json" } };
    return (await (await this.#call(method, path, init)).json()) as T;
  }

  /** One request; resolves with a 2xx response, throws GatewayError otherwise. */
  async #call(method: string, path: string, init: RequestInit = {}): Promise<Response> {
    const what = `${method} ${this.url}${path}`;
    let res: Response;
    try {
      const headers = new Headers(init.headers);
      if (this.#authorization) headers.set("authorization", this.#authorization);
      res = await this.#fetch(`${this.url}${path}`, { ...init, headers, method });
    } catch (err) {
      throw new GatewayError(
        `Cannot reach the blockmend API at ${this.url} (${what}): ${fetchErrorDetail(err)}. ` +
          "Is the gateway running? Point to it with --api URL or BLOCKMEND_API",
        0,
        undefined,
        { cause: err },
      );
    }
    if (res.ok) return res;
    const text = await res.text().catch(() => "");
    let code: string | undefined;
    let message = text.slice(0, 500) || res.statusText;
    try {
      const e = (JSON.parse(text) as ApiErrorBody).error;
      code = e.code;
      message = e.message;
    } catch {
      // not our JSON error shape (a proxy, another server): keep the raw text
    }
    const hint = res.status === 401 ? " (give the token with --token-file FILE or $BLOCKMEND_TOKEN)" : "";
    throw new GatewayError(
      `${what} failed with ${res.status}${code ? ` ${code}` : ""}: ${message}${hint}`,
      res.status,
      code,
    );
  }
}

/** A path segment; `@` stays readable (`web01@s1`). */
function enc(segment: string): string {
  return encodeURIComponent(segment).replace(/%40/g, "@");
}

/** The body of `GET /v1/heal` (see gateway/heal/cluster-status.ts). */
export type { GcReport };

export interface HealStatusBody {
  healing: boolean;
  stores: StoreHealAnswer[];
  /** Head holders without chunks (absent from gateways before this field). */
  witnesses?: { id: string; state: string; reasons: readonly string[] }[];
}

/** What a store lifecycle change answers (gateway/heal/store-lifecycle.ts). */
export interface LifecycleAnswer {
  store: string;
  placementEpoch: number;
  placement: string[];
}

/** The body of `GET /v1/stores/{id}/safe-to-remove` (see gateway/heal/safe-to-remove.ts). */
export type SafeToRemoveBody = SafeToRemove;
