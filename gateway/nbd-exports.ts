/** The NBD server's view of the image service: export name = image name, `image@snapshot` read-only. */
import { ImageNotFoundError } from "./errors.ts";
import type { Image } from "./image.ts";
import type { ImageService } from "./image-service.ts";
import type { BlockDevice, ExportEntry, ExportProvider } from "./nbd/block-device.ts";

/** Serves every image and snapshot of `images` over NBD. */
export class ImageExports implements ExportProvider {
  private readonly images: ImageService;

  constructor(images: ImageService) {
    this.images = images;
  }

  async list(): Promise<ExportEntry[]> {
    const out: ExportEntry[] = [];
    for (const name of await this.images.list()) {
      const head = await this.images.info(name).catch(() => null);
      if (!head) continue;
      out.push({ name, description: `${head.size} bytes` });
      for (const snap of Object.keys(head.snapshots))
        out.push({ name: `${name}@${snap}`, description: "snapshot, read-only" });
    }
    return out;
  }

  async open(name: string): Promise<BlockDevice | null> {
    try {
      return await this.images.open(name);
    } catch (err) {
      if (err instanceof ImageNotFoundError || err instanceof TypeError) return null;
      throw err;
    }
  }

  async release(device: BlockDevice): Promise<void> {
    await this.images.release(device as Image);
  }
}
