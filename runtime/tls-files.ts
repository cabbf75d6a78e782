/**
 * TLS files for the HTTPS listeners (the gateway's HTTP API and S3 endpoint, the chunk
 * store server) and for clients that must trust a private CA (`--store-ca`, `--ca`).
 * The server side reads the same `--tls-dir` as NBD (qemu's x509 layout, `tls-server.ts`).
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import tls from "node:tls";
import type { HttpsCredentials } from "./serve-http.ts";
import { X509_FILES } from "./tls-server.ts";

async function readPem(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new TypeError(`Cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`, {
      cause: error,
    });
  }
}

/**
 * The server certificate and key of `certDir` (`server-cert.pem`, `server-key.pem`),
 * checked to be a usable pair now, so a bad directory fails at startup with its name.
 *
 * @example
 * const tls = await loadHttpsCredentials("/etc/blockmend/pki/server");
 * await serveHttp(app.fetch, { hostname: "0.0.0.0", port: 8443, tls });
 */
export async function loadHttpsCredentials(certDir: string): Promise<HttpsCredentials> {
  const cert = await readPem(join(certDir, X509_FILES.cert), "the server certificate");
  const key = await readPem(join(certDir, X509_FILES.key), "the server key");
  try {
    tls.createSecureContext({ cert, key });
  } catch (error) {
    throw new TypeError(
      `Cannot use the TLS credentials in ${certDir} (${X509_FILES.cert}, ${X509_FILES.key}): ${(error as Error).message}`,
      { cause: error },
    );
  }
  return { cert, key };
}

/** A CA certificate file (PEM, one or more certificates) that clients trust instead of the system's CAs. */
export async function loadCaFile(path: string, flag: string): Promise<string> {
  const pem = await readPem(path, `${flag}`);
  if (!pem.includes("-----BEGIN CERTIFICATE-----"))
    throw new TypeError(`${flag} ${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return pem;
}
