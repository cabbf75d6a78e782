/**
 * The checksums a request body can carry, computed as it streams by the SDK's own
 * checksum classes: `x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}` (base64, in a
 * header or the aws-chunked trailer), `Content-MD5` (base64) and the SigV4 payload hash
 * (`x-amz-content-sha256`, hex). CRC32 is zlib's native one where the runtime has it.
 * The SHA-256s of a large body run on a worker thread (`workers/sha256-stream.ts`).
 */
import { createHash } from "node:crypto";
import { Crc32c, Crc64Nvme } from "@aws-sdk/checksums/crc";
import { Crc32 } from "@smithy/core/checksum";
import { OffThreadSha256 } from "../../workers/sha256-stream.ts";
import { S3Error } from "./s3-errors.ts";

/** Bodies from this size on have their SHA-256s computed off the gateway's thread. */
export const OFF_THREAD_SHA256_BYTES = 1 << 20;

/** A running checksum. */
export interface Checksum {
  update(data: Uint8Array): void;
  digest(): Promise<Uint8Array>;
  /** Frees what an unfinished checksum holds (a body that failed midway). */
  drop?(): void;
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

/** A SHA-256 on this thread for a small body, on the worker for a large one. */
function sha256For(large: boolean): Checksum {
  return large ? new OffThreadSha256() : nodeHash("sha256");
}

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
    const declared = Number(
      headers.get("x-amz-decoded-content-length") ?? headers.get("content-length") ?? 0,
    );
    const large = declared >= OFF_THREAD_SHA256_BYTES;
    for (const [header, make] of Object.entries(CHECKSUM_HEADERS)) {
      const value = headers.get(header);
      if (value === null) continue;
      const checksum = header === "x-amz-checksum-sha256" ? sha256For(large) : make();
      this.#all.push({ header, checksum, expected: value, encoding: "base64" });
    }
    const md5 = headers.get("content-md5");
    if (md5 !== null)
      this.#all.push({ header: "content-md5", checksum: nodeHash("md5"), expected: md5, encoding: "base64" });
    if (payloadSha256 !== null) {
      this.#all.push({
        header: "x-amz-content-sha256",
        checksum: sha256For(large),
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

  /** Frees what unfinished checksums hold; call once the body is done with, verified or not. */
  drop(): void {
    for (const e of this.#all) e.checksum.drop?.();
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
