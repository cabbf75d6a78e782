/**
 * The checksums a request body can carry, computed as it streams by the SDK's own
 * checksum classes: `x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}` (base64, in a
 * header or the aws-chunked trailer), `Content-MD5` (base64) and the SigV4 payload hash
 * (`x-amz-content-sha256`, hex). CRC32 is zlib's native one where the runtime has it.
 */
import { createHash } from "node:crypto";
import { Crc32c, Crc64Nvme } from "@aws-sdk/checksums/crc";
import { Crc32 } from "@smithy/core/checksum";
import { S3Error } from "./s3-errors.ts";

/** A running checksum. */
export interface Checksum {
  update(data: Uint8Array): void;
  digest(): Promise<Uint8Array>;
}

function nodeHash(algorithm: "sha1" | "sha256" | "md5"): Checksum {
  const h = createHash(algorithm);
  return {
    update: (data) => {
      h.update(data);
    },
    digest: async () => new Uint8Array(h.digest()),
  };
}

/** The `x-amz-checksum-*` headers S3 defines, each with its algorithm. */
export const CHECKSUM_HEADERS: Readonly<Record<string, () => Checksum>> = {
  "x-amz-checksum-crc32": () => new Crc32(),
  "x-amz-checksum-crc32c": () => new Crc32c(),
  "x-amz-checksum-crc64nvme": () => new Crc64Nvme(),
  "x-amz-checksum-sha1": () => nodeHash("sha1"),
  "x-amz-checksum-sha256": () => nodeHash("sha256"),
};

/** One expected value being checked as the body streams. */
interface Expectation {
  readonly header: string;
  readonly checksum: Checksum;
  /** Expected digest; for a trailer checksum, filled when the trailer arrives. */
  expected: string | null;
  readonly encoding: "base64" | "hex";
}

/** The checksums to verify over one body. */
export class PayloadChecksums {
  readonly #all: Expectation[] = [];
  /** Header names whose value comes in the trailer. */
  readonly #fromTrailer = new Set<string>();

  /** Collects what `headers` promise: checksum headers, Content-MD5, the trailer's declared checksum, and a payload SHA-256. */
  constructor(headers: Headers, payloadSha256: string | null) {
    for (const [header, make] of Object.entries(CHECKSUM_HEADERS)) {
      const value = headers.get(header);
      if (value !== null) this.#all.push({ header, checksum: make(), expected: value, encoding: "base64" });
    }
    const md5 = headers.get("content-md5");
    if (md5 !== null)
      this.#all.push({ header: "content-md5", checksum: nodeHash("md5"), expected: md5, encoding: "base64" });
    if (payloadSha256 !== null) {
      this.#all.push({
        header: "x-amz-content-sha256",
        checksum: nodeHash("sha256"),
        expected: payloadSha256,
        encoding: "hex",
      });
    }
    for (const name of (headers.get("x-amz-trailer") ?? "").split(",")) {
      const header = name.trim().toLowerCase();
      if (header === "") continue;
      const make = CHECKSUM_HEADERS[header];
      if (!make) throw new S3Error("InvalidRequest", `Unsupported trailing header "${header}"`);
      this.#fromTrailer.add(header);
      this.#all.push({ header, checksum: make(), expected: null, encoding: "base64" });
    }
  }

  /** True when a trailer must bring checksum values. */
  get expectsTrailer(): boolean {
    return this.#fromTrailer.size > 0;
  }

  update(data: Uint8Array): void {
    for (const e of this.#all) e.checksum.update(data);
  }

  /** Takes the trailer's values for the checksums declared in `x-amz-trailer`. */
  takeTrailer(headers: readonly (readonly [string, string])[]): void {
    for (const [name, value] of headers) {
      const e = this.#all.find((x) => x.header === name && x.expected === null);
      if (e) e.expected = value;
    }
  }

  /** Compares every digest; throws BadDigest (or XAmzContentSHA256Mismatch). Resolves the verified `x-amz-checksum-*` values. */
  async verify(): Promise<Record<string, string>> {
    const verified: Record<string, string> = {};
    for (const e of this.#all) {
      if (e.expected === null)
        throw new S3Error("IncompleteBody", `The trailer lacks the declared ${e.header}`);
      const digest = await e.checksum.digest();
      const actual =
        e.encoding === "hex" ? Buffer.from(digest).toString("hex") : Buffer.from(digest).toString("base64");
      if (actual !== e.expected) {
        if (e.header === "x-amz-content-sha256") {
          throw new S3Error(
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            {
              fields: { ClientComputedContentSHA256: e.expected, S3ComputedContentSHA256: actual },
            },
          );
        }
        throw new S3Error(
          "BadDigest",
          `The ${e.header.replace("x-amz-checksum-", "").toUpperCase()} you specified did not match the calculated checksum.`,
        );
      }
      if (e.header.startsWith("x-amz-checksum-")) verified[e.header] = actual;
    }
    return verified;
  }
}
