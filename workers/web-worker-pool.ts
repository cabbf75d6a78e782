/**
 * TaskPool over web-standard `Worker`s (module workers), moving buffers by transfer.
 * The pool for Deno: there, `node:worker_threads` (which piscina uses) copies every
 * message through a slow serializer, about 100 ms per MiB even with a transfer list,
 * while a web Worker transfers a 1 MiB buffer in well under a millisecond
 * (`bench/pool.ts`, docs/benchmarks.md). It runs on Bun too, which the tests use to
 * check both pools against the same script.
 */
import { availableParallelism } from "node:os";
import { decodeTaskError } from "./_task-error.ts";
import type { RunOptions, TaskPool } from "./task-pool.ts";
import type { TaskInput, TaskName, TaskOutput } from "./tasks.ts";
import type { TaskRequest, WorkerMessage } from "./web-worker-protocol.ts";

/** Options for {@link WebWorkerPool}. */
export interface WebWorkerPoolOptions {
  /** Workers; default: one per core. */
  readonly threads?: number;
}

interface Job {
  readonly id: number;
  readonly request: TaskRequest;
  readonly transfer: readonly ArrayBuffer[];
  readonly signal?: AbortSignal;
  readonly resolve: (output: unknown) => void;
  readonly reject: (error: unknown) => void;
  readonly onAbort: () => void;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  job?: Job;
}

/**
 * A fixed set of workers, one task each at a time (tasks are short CPU bursts: queue
 * rather than oversubscribe the cores), the rest queued in order. An abort of a queued
 * task drops it; an abort of a running one rejects at once and replaces its worker, as
 * piscina does, since a synchronous task cannot be interrupted otherwise.
 *
 * @example
 * const pool = new WebWorkerPool({ threads: 2 });
 * const out = await pool.run("hashBlocks", { data, blockSize: 65536 }, { transfer: [data.buffer] });
 * await pool.close();
 */
export class WebWorkerPool implements TaskPool {
  readonly threads: number;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  #nextId = 1;
  #closed = false;
  /** Set when a worker failed before it was ready (its module did not load): every run then fails with it. */
  #startError: Error | undefined;

  constructor(options: WebWorkerPoolOptions = {}) {
    this.threads = options.threads ?? availableParallelism();
    if (!Number.isInteger(this.threads) || this.threads < 1) {
      throw new RangeError(`WebWorkerPool: invalid thread count ${options.threads}`);
    }
    for (let i = 0; i < this.threads; i++) this.#slots.push(this.#spawn());
  }

  run<K extends TaskName>(name: K, input: TaskInput<K>, options: RunOptions = {}): Promise<TaskOutput<K>> {
    const { signal, transfer = [] } = options;
    if (this.#closed) return Promise.reject(new Error("WebWorkerPool: the pool is closed"));
    if (this.#startError) return Promise.reject(this.#startError);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<TaskOutput<K>>((resolve, reject) => {
      const id = this.#nextId++;
      const job: Job = {
        id,
        request: { id, name, input },
        transfer,
        signal,
        resolve: resolve as (output: unknown) => void,
        reject,
        onAbort: () => this.#abort(job),
      };
      signal?.addEventListener("abort", job.onAbort, { once: true });
      this.#queue.push(job);
      this.#dispatch();
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const error = new Error("WebWorkerPool: the pool was closed before the task ran");
    for (const job of this.#queue.splice(0)) this.#fail(job, error);
    for (const slot of this.#slots) {
      if (slot.job) this.#fail(slot.job, error);
      slot.job = undefined;
      slot.worker.terminate();
    }
  }

  #spawn(): Slot {
    const worker = new Worker(new URL("./web-worker-entry.ts", import.meta.url).href, { type: "module" });
    const slot: Slot = { worker, ready: false };
    worker.onmessage = (event: MessageEvent<WorkerMessage>) => this.#onMessage(slot, event.data);
    worker.onmessageerror = () => {
      const job = slot.job;
      slot.job = undefined;
      if (job) this.#fail(job, new Error("WebWorkerPool: a task result could not be deserialized"));
      this.#dispatch();
    };
    worker.onerror = (event: ErrorEvent) => {
      // Handled here: without preventDefault an error in a worker also ends the process on Deno.
      event.preventDefault();
      this.#onWorkerError(slot, new Error(`WebWorkerPool: worker failed: ${event.message}`));
    };
    return slot;
  }

  #onMessage(slot: Slot, message: WorkerMessage): void {
    if ("ready" in message) {
      slot.ready = true;
    } else if (slot.job?.id === message.id) {
      const job = slot.job;
      slot.job = undefined;
      if ("error" in message) this.#fail(job, decodeTaskError(message.error));
      else this.#succeed(job, message.output);
    }
    this.#dispatch();
  }

  #onWorkerError(slot: Slot, error: Error): void {
    const job = slot.job;
    slot.job = undefined;
    if (job) this.#fail(job, error);
    if (!slot.ready) {
      // The module itself failed to load: respawning would fail the same way, forever.
      this.#startError = error;
      for (const queued of this.#queue.splice(0)) this.#fail(queued, error);
      return;
    }
    this.#replace(slot);
    this.#dispatch();
  }

  #dispatch(): void {
    if (this.#closed) return;
    for (const slot of this.#slots) {
      if (this.#queue.length === 0) return;
      if (!slot.ready || slot.job) continue;
      const job = this.#queue.shift()!;
      slot.job = job;
      try {
        slot.worker.postMessage(job.request, [...job.transfer]);
      } catch (error) {
        // Not cloneable, or a transfer of a detached buffer: the task never reached the worker.
        slot.job = undefined;
        this.#fail(job, error);
      }
    }
  }

  #abort(job: Job): void {
    const reason = job.signal?.reason;
    const queued = this.#queue.indexOf(job);
    if (queued >= 0) {
      this.#queue.splice(queued, 1);
      this.#fail(job, reason);
      return;
    }
    const slot = this.#slots.find((s) => s.job === job);
    if (!slot) return;
    slot.job = undefined;
    this.#fail(job, reason);
    this.#replace(slot);
  }

  /** Terminates the worker of `slot` and puts a fresh one in its place. */
  #replace(slot: Slot): void {
    slot.worker.terminate();
    if (this.#closed) return;
    const fresh = this.#spawn();
    const index = this.#slots.indexOf(slot);
    if (index >= 0) this.#slots[index] = fresh;
  }

  #fail(job: Job, error: unknown): void {
    job.signal?.removeEventListener("abort", job.onAbort);
    job.reject(error);
  }

  #succeed(job: Job, output: unknown): void {
    job.signal?.removeEventListener("abort", job.onAbort);
    job.resolve(output);
  }
}
