/**
 * The NBD server's view of the image service: export name = image name, `image@snapshot`
 * read-only. Every device it hands out records its request latencies (metrics and heal
 * throttling) by wrapping the image, not by changing it.
 */
import { ImageNotFoundError } from "../errors.ts";
import type { LatencyMonitor } from "../heal/latency-monitor.ts";
import type { BlockDevice, ExportEntry, ExportProvider } from "../nbd/block-device.ts";
import type { Image } from "./image.ts";
import type { ImageService } from "./image-service.ts";

/** `image` with each I/O method timed into `latency` (reads and writes with their bytes). */
function timed(image: Image, latency: LatencyMonitor): BlockDevice {
  const time =
    <A extends unknown[], R>(op: string, fn: (...a: A) => Promise<R>, bytes?: (...a: A) => number) =>
    async (...args: A): Promise<R> => {
      const t = performance.now();
      let done = false;
      try {
        const result = await fn(...args);
        done = true;
        return result;
      } finally {
        // A failed request counts for latency, not for throughput.
        latency.record(op, (performance.now() - t) / 1000, done ? bytes?.(...args) : 0);
      }
    };
  return {
    get size() {
      return image.size;
    },
    blockSizes: image.blockSizes,
    capabilities: image.capabilities,
    description: image.description,
    read: time(
      "read",
      (o: number, l: number) => image.read(o, l),
      (_o, l) => l,
    ),
    write: time(
      "write",
      (o: number, d: Uint8Array, f: { fua: boolean }) => image.write(o, d, f),
      (_o, d) => d.byteLength,
    ),
    flush: time("flush", () => image.flush()),
    trim: time("trim", (o: number, l: number, f: { fua: boolean }) => image.trim(o, l, f)),
    writeZeroes: time(
      "writeZeroes",
      (o: number, l: number, f: { fua: boolean; noHole: boolean; fastZero: boolean }) =>
        image.writeZeroes(o, l, f),
    ),
    blockStatus: time("blockStatus", (o: number, l: number) => image.blockStatus(o, l)),
  };
}

/** Serves every image and snapshot of `images` over NBD. */
export class ImageExports implements ExportProvider {
  readonly #images: ImageService;
  readonly #latency: LatencyMonitor | undefined;
  readonly #devices = new WeakMap<BlockDevice, Image>();

  constructor(images: ImageService, latency?: LatencyMonitor) {
    this.#images = images;
    this.#latency = latency;
  }

  async list(): Promise<ExportEntry[]> {
    const out: ExportEntry[] = [];
    for (const name of await this.#images.list()) {
      const head = await this.#images.info(name).catch(() => null);
      if (!head) continue;
      out.push({ name, description: `${head.size} bytes` });
      for (const snap of Object.keys(head.snapshots))
        out.push({ name: `${name}@${snap}`, description: "snapshot, read-only" });
    }
    return out;
  }

  async open(name: string): Promise<BlockDevice | null> {
    let image: Image;
    try {
      image = await this.#images.open(name);
    } catch (err) {
      if (err instanceof ImageNotFoundError || err instanceof TypeError) return null;
      throw err;
    }
    const device = this.#latency ? timed(image, this.#latency) : image;
    this.#devices.set(device, image);
    return device;
  }

  async release(device: BlockDevice): Promise<void> {
    await this.#images.release(this.#devices.get(device) ?? (device as Image));
  }
}
