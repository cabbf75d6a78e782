/**
 * Authentication of S3 requests: AWS Signature Version 4 in the Authorization header or
 * in a presigned URL's query. The signature is recomputed for the received request with
 * the SDK's own signer (@smithy/signature-v4) and compared in constant time; only the
 * parsing of the header and query forms is ours. Unsigned requests are refused.
 *
 * The result says how the payload is protected (a SHA-256 to check, unsigned, or an
 * aws-chunked stream whose chunk signatures {@link ChunkSignatureChain} checks).
 */
import { timingSafeEqual } from "node:crypto";
import { Sha256 } from "@smithy/core/checksum";
import { SignatureV4 } from "@smithy/signature-v4";
import type { S3Credentials } from "./credentials.ts";
import { S3Error } from "./s3-errors.ts";

/** Largest difference between the request's date and ours: S3's RequestTimeTooSkewed limit. */
export const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;
/** Longest presigned URL lifetime SigV4 allows: seven days. */
export const MAX_PRESIGNED_EXPIRES_S = 7 * 24 * 3600;

const ALGORITHM = "AWS4-HMAC-SHA256";
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** How the body of an authenticated request is protected. */
export type PayloadProtection =
  /** `x-amz-content-sha256` is the body's SHA-256 (hex): check it. */
  | { readonly kind: "sha256"; readonly sha256: string }
  /** `UNSIGNED-PAYLOAD` (and presigned URLs): only checksums, if any, protect it. */
  | { readonly kind: "unsigned" }
  /** aws-chunked, every chunk signed (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`). */
  | { readonly kind: "streaming-signed"; readonly trailer: boolean; readonly chain: ChunkSignatureChain }
  /** aws-chunked, unsigned, with a trailing checksum (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`). */
  | { readonly kind: "streaming-unsigned-trailer" };

/** An authenticated request. */
export interface Authenticated {
  readonly accessKeyId: string;
  readonly payload: PayloadProtection;
}

/** The parts of a received request a signature covers. */
export interface RequestToVerify {
  readonly method: string;
  /** The raw (still percent-encoded) path. */
  readonly path: string;
  /** Query parameters, percent-decoded (`+` stays `+`), in order. */
  readonly query: readonly (readonly [string, string])[];
  readonly headers: Headers;
}

/** Options of {@link SigV4Verifier}. */
export interface SigV4Options {
  readonly region: string;
  readonly credentials: S3Credentials;
  /** Current time in ms (tests move it). */
  readonly now?: () => number;
}

/** Verifies SigV4 signatures of requests to one region with a fixed set of keys. */
export class SigV4Verifier {
  readonly #options: SigV4Options;
  readonly #signers = new Map<string, SignatureV4>();

  constructor(options: SigV4Options) {
    this.#options = options;
  }

  /** Authenticates `request` or throws the S3Error S3 would answer. */
  async verify(request: RequestToVerify): Promise<Authenticated> {
    const auth = request.headers.get("authorization");
    const params = new Map(request.query.map(([k, v]) => [k, v] as const));
    if (auth?.startsWith(`${ALGORITHM} `)) return this.#verifyHeader(request, auth);
    if (params.get("X-Amz-Algorithm") === ALGORITHM) return this.#verifyPresigned(request, params);
    if (auth || params.has("X-Amz-Algorithm") || params.has("AWSAccessKeyId")) {
      throw new S3Error(
        "InvalidRequest",
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
      );
    }
    throw new S3Error(
      "AccessDenied",
      "Anonymous requests are refused: sign requests with AWS Signature Version 4",
    );
  }

  #signer(accessKeyId: string): SignatureV4 {
    const secret = this.#options.credentials.get(accessKeyId);
    if (secret === undefined) {
      throw new S3Error(
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
        {
          fields: { AWSAccessKeyId: accessKeyId },
        },
      );
    }
    let signer = this.#signers.get(accessKeyId);
    if (!signer) {
      signer = new SignatureV4({
        credentials: { accessKeyId, secretAccessKey: secret },
        region: this.#options.region,
        service: "s3",
        sha256: Sha256,
        // S3 signs the path as sent, not encoded a second time.
        uriEscapePath: false,
        applyChecksum: false,
      });
      this.#signers.set(accessKeyId, signer);
    }
    return signer;
  }

  /** Checks `AK/DATE/REGION/s3/aws4_request` against the request date and our region. */
  #scope(
    credential: string,
    longDate: string,
    malformed: "AuthorizationHeaderMalformed" | "AuthorizationQueryParametersError",
  ) {
    const parts = credential.split("/");
    if (parts.length !== 5 || parts[3] !== "s3" || parts[4] !== "aws4_request") {
      throw new S3Error(
        malformed,
        `The credential "${credential}" is not ACCESS_KEY/DATE/REGION/s3/aws4_request`,
      );
    }
    const [accessKeyId, date, region] = parts as [string, string, string];
    if (region !== this.#options.region) {
      throw new S3Error(
        malformed,
        `The authorization region '${region}' is wrong; expecting '${this.#options.region}'`,
        {
          fields: { Region: this.#options.region },
        },
      );
    }
    if (date !== longDate.slice(0, 8)) {
      throw new S3Error(
        malformed,
        `The credential date "${date}" does not match the request date "${longDate}"`,
      );
    }
    return { accessKeyId, scope: parts.slice(1).join("/") };
  }

  async #verifyHeader(request: RequestToVerify, auth: string): Promise<Authenticated> {
    const fields = new Map<string, string>();
    for (const part of auth.slice(ALGORITHM.length + 1).split(",")) {
      const eq = part.indexOf("=");
      if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
    }
    const credential = fields.get("Credential");
    const signedList = fields.get("SignedHeaders");
    const signature = fields.get("Signature");
    if (!credential || !signedList || !signature) {
      throw new S3Error(
        "AuthorizationHeaderMalformed",
        "The Authorization header needs Credential, SignedHeaders and Signature",
      );
    }
    const amzDate = request.headers.get("x-amz-date");
    const date = amzDate ? parseAmzDate(amzDate) : parseHttpDate(request.headers.get("date"));
    if (!date)
      throw new S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header");
    const longDate = formatAmzDate(date);
    const { accessKeyId, scope } = this.#scope(credential, longDate, "AuthorizationHeaderMalformed");
    const signer = this.#signer(accessKeyId);
    const skew = Math.abs(this.#now() - date.getTime());
    if (skew > MAX_CLOCK_SKEW_MS) {
      throw new S3Error(
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
        {
          fields: {
            RequestTime: longDate,
            ServerTime: new Date(this.#now()).toISOString(),
            MaxAllowedSkewMilliseconds: String(MAX_CLOCK_SKEW_MS),
          },
        },
      );
    }
    const contentSha = request.headers.get("x-amz-content-sha256");
    if (contentSha === null) {
      throw new S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
    }
    const signed = signedList.split(";");
    const { http, unsignable } = this.#canonicalInput(request, signed, {
      "x-amz-content-sha256": contentSha,
    });
    const result = await signer.sign(http, {
      signingDate: date,
      signableHeaders: new Set(signed),
      unsignableHeaders: unsignable,
    });
    const expected = /Signature=([0-9a-f]+)/.exec(String(result.headers.authorization))?.[1] ?? "";
    checkSignature(expected, signature);
    return {
      accessKeyId,
      payload: payloadProtection(contentSha, { signer, longDate, scope, date, seed: signature }),
    };
  }

  async #verifyPresigned(request: RequestToVerify, params: Map<string, string>): Promise<Authenticated> {
    const credential = params.get("X-Amz-Credential");
    const amzDate = params.get("X-Amz-Date");
    const expires = params.get("X-Amz-Expires");
    const signedList = params.get("X-Amz-SignedHeaders");
    const signature = params.get("X-Amz-Signature");
    if (!credential || !amzDate || !expires || !signedList || !signature) {
      throw new S3Error(
        "AuthorizationQueryParametersError",
        "Query-string authentication requires X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature",
      );
    }
    const date = parseAmzDate(amzDate);
    const seconds = Number(expires);
    if (!date)
      throw new S3Error(
        "AuthorizationQueryParametersError",
        `X-Amz-Date "${amzDate}" is not YYYYMMDDTHHMMSSZ`,
      );
    if (!/^\d+$/.test(expires) || seconds < 1 || seconds > MAX_PRESIGNED_EXPIRES_S) {
      throw new S3Error(
        "AuthorizationQueryParametersError",
        `X-Amz-Expires must be a number of seconds from 1 to ${MAX_PRESIGNED_EXPIRES_S}`,
      );
    }
    const { accessKeyId } = this.#scope(credential, amzDate, "AuthorizationQueryParametersError");
    const signer = this.#signer(accessKeyId);
    const now = this.#now();
    if (date.getTime() - now > MAX_CLOCK_SKEW_MS)
      throw new S3Error("AccessDenied", "Request is not valid yet");
    if (now > date.getTime() + seconds * 1000) {
      throw new S3Error("AccessDenied", "Request has expired", {
        fields: {
          "X-Amz-Expires": expires,
          Expires: new Date(date.getTime() + seconds * 1000).toISOString(),
          ServerTime: new Date(now).toISOString(),
        },
      });
    }
    const signed = signedList.split(";");
    const payload = params.get("X-Amz-Content-Sha256") ?? "UNSIGNED-PAYLOAD";
    const { http, unsignable } = this.#canonicalInput(request, signed, { "x-amz-content-sha256": payload });
    const result = await signer.presign(http, {
      signingDate: date,
      expiresIn: seconds,
      signableHeaders: new Set(signed),
      unsignableHeaders: unsignable,
      // The signed headers stay headers: only what the client put in the query is in the query.
      unhoistableHeaders: new Set([...signed, "x-amz-content-sha256"]),
    });
    checkSignature(String(result.query?.["X-Amz-Signature"] ?? ""), signature);
    return {
      accessKeyId,
      payload: payload === "UNSIGNED-PAYLOAD" ? { kind: "unsigned" } : payloadProtection(payload, null),
    };
  }

  /**
   * The request as the signer sees it: the signed headers with their received values
   * (plus `extra` for the payload hash, kept out of the canonical headers unless signed),
   * the canonical path, the decoded query.
   */
  #canonicalInput(request: RequestToVerify, signed: readonly string[], extra: Record<string, string>) {
    const headers: Record<string, string> = {};
    for (const name of signed) {
      const value = request.headers.get(name);
      if (value === null)
        throw new S3Error("AccessDenied", `The signed header "${name}" is missing from the request`);
      headers[name] = value;
    }
    const unsignable = new Set<string>();
    for (const [name, value] of Object.entries(extra)) {
      if (!(name in headers)) {
        headers[name] = value;
        unsignable.add(name);
      }
    }
    // prepareRequest re-creates x-amz-date from signingDate: keep it out unless the client signed it.
    if (!signed.includes("x-amz-date")) unsignable.add("x-amz-date");
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of request.query) {
      const had = query[k];
      query[k] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v];
    }
    const http = {
      method: request.method,
      protocol: "http:",
      hostname: "",
      path: canonicalPath(request.path),
      query,
      headers,
    };
    return { http, unsignable };
  }

  #now(): number {
    return this.#options.now?.() ?? Date.now();
  }
}

/** Verifies the signatures of an aws-chunked body, each chained to the one before (seeded by the request's). */
export class ChunkSignatureChain {
  readonly #signer: SignatureV4;
  readonly #longDate: string;
  readonly #scope: string;
  readonly #date: Date;
  #previous: string;

  constructor(signer: SignatureV4, date: Date, longDate: string, scope: string, seed: string) {
    this.#signer = signer;
    this.#date = date;
    this.#longDate = longDate;
    this.#scope = scope;
    this.#previous = seed;
  }

  /** Checks one chunk's signature given the hex SHA-256 of its data; throws SignatureDoesNotMatch. */
  async verifyChunk(dataSha256: string, claimed: string): Promise<void> {
    const stringToSign = [
      `${ALGORITHM}-PAYLOAD`,
      this.#longDate,
      this.#scope,
      this.#previous,
      EMPTY_SHA256,
      dataSha256,
    ].join("\n");
    await this.#check(stringToSign, claimed);
  }

  /** Checks the trailer's signature given the hex SHA-256 of its canonical lines (`name:value\n` each). */
  async verifyTrailer(trailerSha256: string, claimed: string): Promise<void> {
    const stringToSign = [
      `${ALGORITHM}-TRAILER`,
      this.#longDate,
      this.#scope,
      this.#previous,
      trailerSha256,
    ].join("\n");
    await this.#check(stringToSign, claimed);
  }

  async #check(stringToSign: string, claimed: string): Promise<void> {
    const expected = await this.#signer.sign(stringToSign, { signingDate: this.#date });
    checkSignature(expected, claimed);
    this.#previous = claimed;
  }
}

function payloadProtection(
  contentSha: string,
  chain: { signer: SignatureV4; longDate: string; scope: string; date: Date; seed: string } | null,
): PayloadProtection {
  if (/^[0-9a-f]{64}$/.test(contentSha)) return { kind: "sha256", sha256: contentSha };
  if (contentSha === "UNSIGNED-PAYLOAD") return { kind: "unsigned" };
  if (contentSha === "STREAMING-UNSIGNED-PAYLOAD-TRAILER") return { kind: "streaming-unsigned-trailer" };
  if (
    chain &&
    (contentSha === "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" ||
      contentSha === "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
  ) {
    return {
      kind: "streaming-signed",
      trailer: contentSha.endsWith("-TRAILER"),
      chain: new ChunkSignatureChain(chain.signer, chain.date, chain.longDate, chain.scope, chain.seed),
    };
  }
  if (contentSha.startsWith("STREAMING-"))
    throw new S3Error("NotImplemented", `Payload signing "${contentSha}" is not supported`);
  throw new S3Error(
    "InvalidArgument",
    `x-amz-content-sha256 "${contentSha.slice(0, 80)}" is not a SHA-256 or a known payload mode`,
  );
}

/** Constant-time comparison of two hex signatures; throws SignatureDoesNotMatch. */
function checkSignature(expected: string, claimed: string): void {
  const a = new TextEncoder().encode(expected);
  const b = new TextEncoder().encode(claimed);
  if (a.byteLength === 0 || a.byteLength !== b.byteLength || !timingSafeEqual(a, b)) {
    throw new S3Error(
      "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    );
  }
}

/** The canonical URI: every segment decoded, then encoded as SigV4 says (RFC 3986 unreserved kept). */
export function canonicalPath(rawPath: string): string {
  return rawPath
    .split("/")
    .map((segment) => {
      let decoded: string;
      try {
        decoded = decodeURIComponent(segment);
      } catch {
        decoded = segment;
      }
      return encodeURIComponent(decoded).replace(
        /[!'()*]/g,
        (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
      );
    })
    .join("/");
}

/** `YYYYMMDDTHHMMSSZ` to a Date, or null. */
export function parseAmzDate(value: string): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return null;
  const d = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  return Number.isNaN(d.getTime()) ? null : d;
}

function parseHttpDate(value: string | null): Date | null {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A Date as `YYYYMMDDTHHMMSSZ`. */
export function formatAmzDate(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}
