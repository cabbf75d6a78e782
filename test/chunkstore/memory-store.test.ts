import { MemoryStore } from "../../chunkstore/memory-store.ts";
import { describeConformance } from "./conformance.ts";

describeConformance("memory", {
  open: async () => new MemoryStore(),
  corrupt: async (store, hash) => (store as MemoryStore).corrupt(hash),
});
