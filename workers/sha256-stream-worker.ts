/**
 * Web Worker module for {@link import("./sha256-stream.ts").OffThreadSha256}: keeps one
 * running SHA-256 per stream id, fed in order, and hands each buffer back for reuse.
 */
import { createHash, type Hash } from "node:crypto";
import type { Sha256Reply, Sha256Request } from "./sha256-stream.ts";

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<Sha256Request>) => void) | null;
  postMessage(message: Sha256Reply, transfer?: Transferable[]): void;
};

const running = new Map<number, Hash>();

scope.onmessage = ({ data: m }) => {
  if (m.op === "update") {
    let h = running.get(m.id);
    if (!h) {
      h = createHash("sha256");
      running.set(m.id, h);
    }
    h.update(m.data.subarray(0, m.length));
    scope.postMessage({ op: "free", data: m.data }, [m.data.buffer as ArrayBuffer]);
  } else if (m.op === "digest") {
    const digest = new Uint8Array((running.get(m.id) ?? createHash("sha256")).digest());
    running.delete(m.id);
    scope.postMessage({ op: "digest", id: m.id, digest }, [digest.buffer as ArrayBuffer]);
  } else running.delete(m.id);
};
