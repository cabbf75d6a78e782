/**
 * Starts the S3 endpoint of a gateway on its own listener: the catalog adapter over the
 * image service, the app, and the HTTP server.
 */
import { Hono } from "hono";
import { requestGuard } from "../../access/request-guard.ts";
import { type HttpsCredentials, serveHttp } from "../../runtime/serve-http.ts";
import type { ImageService } from "../image/image-service.ts";
import type { S3Credentials } from "./credentials.ts";
import { ImageCatalogAdapter } from "./image-catalog-adapter.ts";
import { createS3App } from "./s3-app.ts";
import type { S3EndpointSettings } from "./s3-context.ts";
import { s3ErrorResponse } from "./s3-errors.ts";

/** Largest request body the runtime lets through: S3's largest object (5 TiB); the endpoint streams and bounds what it keeps. */
const MAX_S3_BODY_BYTES = 5 * 1024 ** 4;

/** Configuration of `--s3` and its companion flags. */
export interface S3EndpointConfig extends S3EndpointSettings {
  readonly hostname: string;
  readonly port: number;
  readonly credentials: S3Credentials;
  /** More names clients reach it by (`--public-name`), for the Host rule. */
  readonly publicNames?: readonly string[];
  /** HTTPS (from `--tls-dir`). */
  readonly tls?: HttpsCredentials;
}

/** A running endpoint. */
export interface S3Endpoint {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves the images of `images` over S3 on `config.hostname:config.port`. In front of the
 * endpoint: the Host rule of `access/` (DNS rebinding; virtual-host buckets under the
 * domain count as its names). Every request is signed (SigV4), so a web page cannot forge
 * one: the Origin and body-type rules of the HTTP API are not needed here, and S3 objects
 * have any content type.
 */
export async function startS3Endpoint(images: ImageService, config: S3EndpointConfig): Promise<S3Endpoint> {
  const s3 = createS3App(new ImageCatalogAdapter(images), config);
  const guarded = new Hono();
  guarded.onError((err, c) =>
    s3ErrorResponse(err, { method: c.req.method, resource: new URL(c.req.url).pathname, requestId: "-" }),
  );
  guarded.use(
    "*",
    requestGuard({
      hostname: config.hostname,
      publicNames: config.publicNames,
      subdomainsOf: config.domain ? [config.domain] : [],
      browserRules: false,
    }),
  );
  guarded.all("*", (c) => s3.app.fetch(c.req.raw));
  const server = await serveHttp(guarded.fetch, {
    hostname: config.hostname,
    port: config.port,
    maxRequestBodySize: MAX_S3_BODY_BYTES,
    tls: config.tls,
  });
  return {
    url: server.url,
    close: async () => {
      s3.close();
      await server.close();
    },
  };
}
