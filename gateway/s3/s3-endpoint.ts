/**
 * Starts the S3 endpoint of a gateway on its own listener: the catalog adapter over the
 * image service, the app, and the HTTP server.
 */
import { serveHttp } from "../../runtime/serve-http.ts";
import type { ImageService } from "../image/image-service.ts";
import type { S3Credentials } from "./credentials.ts";
import { ImageCatalogAdapter } from "./image-catalog-adapter.ts";
import { createS3App } from "./s3-app.ts";
import type { S3EndpointSettings } from "./s3-context.ts";

/** Largest request body the runtime lets through: S3's largest object (5 TiB); the endpoint streams and bounds what it keeps. */
const MAX_S3_BODY_BYTES = 5 * 1024 ** 4;

/** Configuration of `--s3` and its companion flags. */
export interface S3EndpointConfig extends S3EndpointSettings {
  readonly hostname: string;
  readonly port: number;
  readonly credentials: S3Credentials;
}

/** A running endpoint. */
export interface S3Endpoint {
  readonly url: string;
  close(): Promise<void>;
}

/** Serves the images of `images` over S3 on `config.hostname:config.port`. */
export async function startS3Endpoint(images: ImageService, config: S3EndpointConfig): Promise<S3Endpoint> {
  const s3 = createS3App(new ImageCatalogAdapter(images), config);
  const server = await serveHttp(s3.app.fetch, {
    hostname: config.hostname,
    port: config.port,
    maxRequestBodySize: MAX_S3_BODY_BYTES,
  });
  return {
    url: server.url,
    close: async () => {
      s3.close();
      await server.close();
    },
  };
}
