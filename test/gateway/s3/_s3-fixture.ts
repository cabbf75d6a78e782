/** An S3 endpoint in this process over in-memory stores, served on a loopback port, and signing helpers. */
import { S3Client } from "@aws-sdk/client-s3";
import { Sha256 } from "@smithy/core/checksum";
import { SignatureV4 } from "@smithy/signature-v4";
import type { GatewayCore } from "../../../gateway/gateway.ts";
import type { ImageService } from "../../../gateway/image/image-service.ts";
import { ImageCatalogAdapter } from "../../../gateway/s3/image-catalog-adapter.ts";
import { createS3App, type S3App } from "../../../gateway/s3/s3-app.ts";
import { type HttpServer, serveHttp } from "../../../runtime/serve-http.ts";
import { imageService } from "../image/_image-fixture.ts";

export const ACCESS_KEY = "TESTACCESSKEY";
export const SECRET = "test-secret-key-0123456789";
export const BUCKET = "images";
export const REGION = "us-east-1";

/** A running endpoint over a fresh image service. */
export interface S3Fixture {
  readonly service: ImageService;
  readonly core: GatewayCore;
  readonly s3: S3App;
  readonly server: HttpServer;
  readonly url: string;
  /** Moves the endpoint's clock (ms added to now). */
  skew: number;
  client(options?: { secret?: string; accessKeyId?: string }): S3Client;
  close(): Promise<void>;
}

export async function startS3Fixture(
  options: { domain?: string; minReplicas?: number } = {},
): Promise<S3Fixture> {
  const { service, core } = await imageService(undefined, { minReplicas: options.minReplicas });
  const fixture = { skew: 0 } as { skew: number } & Partial<S3Fixture>;
  const s3 = createS3App(new ImageCatalogAdapter(service), {
    bucket: BUCKET,
    region: REGION,
    credentials: new Map([[ACCESS_KEY, SECRET]]),
    now: () => Date.now() + fixture.skew,
    ...(options.domain ? { domain: options.domain } : {}),
  });
  const server = await serveHttp(s3.app.fetch, { hostname: "127.0.0.1", port: 0 });
  return Object.assign(fixture, {
    service,
    core,
    s3,
    server,
    url: server.url,
    client: (o: { secret?: string; accessKeyId?: string } = {}) =>
      new S3Client({
        endpoint: server.url,
        region: REGION,
        forcePathStyle: true,
        credentials: { accessKeyId: o.accessKeyId ?? ACCESS_KEY, secretAccessKey: o.secret ?? SECRET },
      }),
    close: async () => {
      s3.close();
      await server.close();
      await service.close();
    },
  }) as S3Fixture;
}

/** The SDK's signer with the test key, for requests the SDK clients would not make. */
export function testSigner(secret = SECRET): SignatureV4 {
  return new SignatureV4({
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: secret },
    region: REGION,
    service: "s3",
    sha256: Sha256,
    uriEscapePath: false,
  });
}

/** Signs and sends a request to `base` (headers-style SigV4). */
export async function signedFetch(
  base: string,
  method: string,
  path: string,
  init: {
    headers?: Record<string, string>;
    body?: Uint8Array;
    query?: Record<string, string>;
    signingDate?: Date;
  } = {},
): Promise<Response> {
  const url = new URL(path, base);
  const headers: Record<string, string> = { host: url.host, ...init.headers };
  if (!Object.keys(headers).some((h) => h.toLowerCase() === "x-amz-content-sha256")) {
    headers["x-amz-content-sha256"] = new Bun.CryptoHasher("sha256")
      .update(init.body ?? new Uint8Array())
      .digest("hex");
  }
  const signed = await testSigner().sign(
    {
      method,
      protocol: "http:",
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
      query: init.query ?? {},
      headers,
    },
    { signingDate: init.signingDate },
  );
  const qs = new URLSearchParams(init.query ?? {}).toString();
  return fetch(`${url.origin}${url.pathname}${qs ? `?${qs}` : ""}`, {
    method,
    headers: signed.headers as Record<string, string>,
    body: init.body as BodyInit | undefined,
  });
}

/** Deterministic bytes (xorshift). */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = Math.imul(seed + 1, 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
