/**
 * Web Worker module for {@link import("./web-worker-pool.ts").WebWorkerPool}: runs one
 * task per message and posts the result back, transferring its buffers. Says "ready"
 * once the task modules (and their native hashing engine) are loaded.
 */
import { encodeTaskError } from "./_task-error.ts";
import { transferablesOf } from "./_transferables.ts";
import { tasks } from "./tasks.ts";
import type { TaskRequest, WorkerMessage } from "./web-worker-protocol.ts";

// The worker global scope, typed with the two members used (the DOM lib types the window).
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<TaskRequest>) => void) | null;
  postMessage(message: WorkerMessage, transfer?: Transferable[]): void;
};

scope.onmessage = async ({ data: { id, name, input } }) => {
  try {
    const task = tasks[name] as ((input: unknown) => unknown) | undefined;
    if (!task) throw new TypeError(`Unknown task "${name}"`);
    const output = await task(input);
    scope.postMessage({ id, output }, transferablesOf(output));
  } catch (error) {
    scope.postMessage({ id, error: encodeTaskError(error) });
  }
};

scope.postMessage({ ready: true });
