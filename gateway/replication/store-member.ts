/** One configured store of a gateway, with the role the cluster record gives it. */
import type { ChunkStore } from "../../chunkstore/chunk-store.ts";

/** A store as the replication layer uses it. */
export interface StoreMember {
  /** The operator's name for it (`--store ID=URL`), the key of replica state in heads. */
  readonly id: string;
  readonly url: string;
  readonly store: ChunkStore;
  /** Holds chunks (a data store); false for a witness. */
  readonly chunks: boolean;
  /** Holds register state (heads, the cluster record): a member of the register. */
  readonly refs: boolean;
}
