/**
 * The S3 endpoint against hostile clients (issue 9), on a real HTTPS listener in front of
 * an image service: unsigned and wrongly signed requests, plaintext and TLS mix-ups, a
 * stalled handshake, an oversized header, huge and slow-drip bodies from clients that do
 * not sign, a browser's cross-origin request and DNS rebinding. Each refusal creates no
 * object, and the endpoint serves the next signed request.
 *
 * S3 key pairs have no scopes (every key may write), so there is no read-scope case here.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ImageService } from "../../../gateway/image/image-service.ts";
import { type S3Endpoint, startS3Endpoint } from "../../../gateway/s3/s3-endpoint.ts";
import { fetchTrusting } from "../../../runtime/tls-fetch.ts";
import { loadHttpsCredentials } from "../../../runtime/tls-files.ts";
import { head, plainToTls, rawRequest, stalledHandshake, tlsToPlain } from "../../support/hostile-client.ts";
import { imageService } from "../image/_image-fixture.ts";
import { makeTestPki, type TestPki } from "../nbd/_pki.ts";
import { ACCESS_KEY, BUCKET, REGION, SECRET, testSigner } from "./_s3-fixture.ts";

let pki: TestPki;
let ca: string;
let service: ImageService;
let endpoint: S3Endpoint;
let plainEndpoint: S3Endpoint;
let f: ReturnType<typeof fetchTrusting>;

beforeAll(async () => {
  pki = await makeTestPki();
  ca = await Bun.file(`${pki.server}/ca-cert.pem`).text();
  f = fetchTrusting(ca);
  service = (await imageService()).service;
  const config = {
    hostname: "127.0.0.1",
    port: 0,
    bucket: BUCKET,
    region: REGION,
    credentials: new Map([[ACCESS_KEY, SECRET]]),
    domain: "s3.example",
  };
  endpoint = await startS3Endpoint(service, { ...config, tls: await loadHttpsCredentials(pki.server) });
  plainEndpoint = await startS3Endpoint(service, config);
}, 60_000);

afterAll(async () => {
  await endpoint?.close();
  await plainEndpoint?.close();
  await service?.close();
  await pki?.remove();
});

/** A SigV4-signed request over HTTPS (with `secret`, default the right one). */
async function signed(method: string, path: string, body?: Uint8Array, secret = SECRET): Promise<Response> {
  const url = new URL(path, endpoint.url);
  const headers: Record<string, string> = {
    host: url.host,
    "x-amz-content-sha256": new Bun.CryptoHasher("sha256").update(body ?? new Uint8Array()).digest("hex"),
  };
  const req = await testSigner(secret).sign({
    method,
    protocol: "https:",
    hostname: url.hostname,
    port: Number(url.port),
    path: url.pathname,
    query: {},
    headers,
  });
  return f(url, {
    method,
    headers: req.headers as Record<string, string>,
    body: body as BodyInit | undefined,
  });
}

/** No image was created by a refused request, and a signed listing still answers. */
async function unchangedAndServing(): Promise<void> {
  expect(await service.list()).toEqual([]);
  const res = await signed("GET", `/${BUCKET}`);
  expect(res.status).toBe(200);
  expect(await res.text()).toContain("<ListBucketResult");
}

describe("S3 endpoint, hostile clients", () => {
  test("unsigned and wrongly signed requests are 403 and create nothing", async () => {
    const body = new Uint8Array(4096);
    const unsigned = await f(`${endpoint.url}/${BUCKET}/evil`, { method: "PUT", body });
    expect(unsigned.status).toBe(403);
    expect(await unsigned.text()).toContain("<Code>AccessDenied</Code>");
    const wrong = await signed("PUT", `/${BUCKET}/evil`, body, "not-the-secret-0123456789");
    expect(wrong.status).toBe(403);
    expect(await wrong.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
    await unchangedAndServing();
  });

  test("plain HTTP to the HTTPS port and a TLS hello to the plain port are refused; both keep serving", async () => {
    const toTls = await plainToTls(endpoint.url);
    expect(toTls.text).not.toContain("ListAllMyBucketsResult");
    expect((await tlsToPlain(plainEndpoint.url)).status).toBe(400);
    expect((await fetch(`${plainEndpoint.url}/${BUCKET}`)).status).toBe(403); // up, and wants a signature
    await unchangedAndServing();
  });

  test("a stalled TLS handshake holds up nobody, and is cut off by Bun's idle timeout", async () => {
    const stalled = stalledHandshake(endpoint.url, 30_000);
    await unchangedAndServing();
    const r = await stalled;
    expect(r.closedByServer).toBe(true);
    expect(r.ms).toBeLessThan(20_000);
  }, 40_000);

  test("a 100 KiB header is 431; a 1 TiB or a slow-drip body from a client that does not sign is refused before it is read", async () => {
    const big = await rawRequest(
      endpoint.url,
      [head("GET", `/${BUCKET}`, { host: "127.0.0.1", "x-big": "c".repeat(100 * 1024) })],
      {
        ca,
      },
    );
    expect(big.status).toBe(431);
    const huge = await rawRequest(
      endpoint.url,
      [head("PUT", `/${BUCKET}/evil`, { host: "127.0.0.1", "content-length": String(2 ** 40) }), "x"],
      { ca },
    );
    expect(huge.status).toBe(403);
    const drip = await rawRequest(
      endpoint.url,
      [
        head("PUT", `/${BUCKET}/evil`, { host: "127.0.0.1", "content-length": "4096" }),
        ...Array.from({ length: 30 }, () => "d"),
      ],
      { ca, gapMs: 200, timeoutMs: 10_000 },
    );
    expect(drip.status).toBe(403);
    expect(drip.ms).toBeLessThan(3_000); // answered at once, not after the drip
    await unchangedAndServing();
  }, 20_000);

  test("a browser's cross-origin request cannot sign and is refused; a rebinding Host is 403 before any signature check", async () => {
    const cross = await f(`${endpoint.url}/${BUCKET}/evil`, {
      method: "POST",
      headers: { origin: "https://evil.example", "content-type": "text/plain" },
      body: "x",
    });
    expect(cross.status).toBe(403);
    const port = new URL(endpoint.url).port;
    const rebound = await rawRequest(
      endpoint.url,
      [head("GET", `/${BUCKET}`, { host: `evil.example:${port}` })],
      { ca },
    );
    expect(rebound.status).toBe(403);
    expect(rebound.text).toContain("<Code>AccessDenied</Code>");
    expect(rebound.text).toContain("not a name of this server");
    // Virtual-host buckets under --s3-domain are the endpoint's names (the signature is checked next).
    const vhost = await rawRequest(
      endpoint.url,
      [head("GET", "/", { host: `${BUCKET}.s3.example:${port}` })],
      { ca },
    );
    expect(vhost.text).not.toContain("not a name of this server");
    await unchangedAndServing();
  });
});
