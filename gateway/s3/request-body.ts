/**
 * A request body as verified data: aws-chunked decoded (chunk signatures checked as each
 * chunk ends), every promised checksum computed as it streams and compared at the end.
 * `pump` hands the payload bytes to a sink; it resolves only once everything matched.
 */
import { createHash } from "node:crypto";
import { AwsChunkedDecoder, type ChunkedEvent } from "./aws-chunked-decoder.ts";
import { PayloadChecksums } from "./payload-checksums.ts";
import { S3Error } from "./s3-errors.ts";
import type { PayloadProtection } from "./sigv4-verifier.ts";

/** The verified payload of one request. */
export class VerifiedBody {
  readonly #request: Request;
  readonly #payload: PayloadProtection;
  /** The `x-amz-checksum-*` values that were verified (filled when iteration completes). */
  checksums: Record<string, string> = {};
  /** Payload bytes seen so far. */
  bytes = 0;

  constructor(request: Request, payload: PayloadProtection) {
    this.#request = request;
    this.#payload = payload;
  }

  /** The payload length the request declares (`x-amz-decoded-content-length` or `Content-Length`), if any. */
  get declaredLength(): number | null {
    const h = this.#request.headers;
    const raw = this.#chunked ? h.get("x-amz-decoded-content-length") : h.get("content-length");
    return raw !== null && /^\d+$/.test(raw) ? Number(raw) : null;
  }

  get #chunked(): boolean {
    const p = this.#payload.kind;
    return (
      p === "streaming-signed" ||
      p === "streaming-unsigned-trailer" ||
      /aws-chunked/i.test(this.#request.headers.get("content-encoding") ?? "")
    );
  }

  /**
   * Reads the body to its end, handing each payload piece to `sink` as it arrives (awaited
   * only when `sink` returns a promise: backpressure). Resolves only once everything
   * matched, so a consumer that records its result after `pump` never records unverified
   * data. A push loop, not an async generator: a generator costs promises per piece per
   * level, which was a third of the gateway's thread during an import (docs/benchmarks.md).
   */
  async pump(sink: (piece: Uint8Array) => void | Promise<void>): Promise<void> {
    const payload = this.#payload;
    const checks = new PayloadChecksums(
      this.#request.headers,
      payload.kind === "sha256" ? payload.sha256 : null,
    );
    const reader = this.#request.body?.getReader();
    try {
      if (!this.#chunked) {
        if (reader) {
          for (let r = await reader.read(); !r.done; r = await reader.read()) {
            checks.update(r.value);
            this.bytes += r.value.byteLength;
            const waiting = sink(r.value);
            if (waiting) await waiting;
          }
        }
      } else {
        const decoder = new AwsChunkedDecoder();
        const signed = payload.kind === "streaming-signed" ? payload : null;
        let chunkHash = signed ? createHash("sha256") : null;
        let chunkSignature: string | undefined;
        let ended = false;
        const handle = async (events: ChunkedEvent[]): Promise<void> => {
          for (const e of events) {
            if (e.type === "chunk") {
              if (signed && !e.signature)
                throw new S3Error(
                  "IncompleteBody",
                  "A chunk of a signed aws-chunked body has no chunk-signature",
                );
              chunkSignature = e.signature;
            } else if (e.type === "data") {
              chunkHash?.update(e.bytes);
              checks.update(e.bytes);
              this.bytes += e.bytes.byteLength;
              const waiting = sink(e.bytes);
              if (waiting) await waiting;
            } else if (e.type === "chunk-end") {
              if (signed && chunkHash) {
                await signed.chain.verifyChunk(chunkHash.digest("hex"), chunkSignature!);
                chunkHash = createHash("sha256");
              }
            } else if (e.type === "trailer") {
              if (signed?.trailer) {
                if (!e.signature)
                  throw new S3Error(
                    "IncompleteBody",
                    "The trailer of a signed aws-chunked body has no x-amz-trailer-signature",
                  );
                const canonical = e.headers.map(([n, v]) => `${n}:${v}\n`).join("");
                await signed.chain.verifyTrailer(
                  createHash("sha256").update(canonical).digest("hex"),
                  e.signature,
                );
              }
              checks.takeTrailer(e.headers);
            } else {
              ended = true;
            }
          }
        };
        if (reader) {
          for (let r = await reader.read(); !r.done; r = await reader.read())
            await handle(decoder.push(r.value));
        }
        await handle(decoder.finish());
        if (!ended) throw new S3Error("IncompleteBody", "The aws-chunked body did not end");
      }
      const declared = this.declaredLength;
      if (declared !== null && declared !== this.bytes) {
        throw new S3Error(
          "IncompleteBody",
          `The body has ${this.bytes} bytes; the request declared ${declared}`,
        );
      }
      this.checksums = await checks.verify();
    } finally {
      checks.drop(); // frees off-thread hash state a failed body left
      // A no-op after a full read; stops the upload when the consumer gave up early.
      await reader?.cancel().catch(() => {});
    }
  }
}
