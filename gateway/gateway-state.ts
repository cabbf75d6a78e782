/**
 * A gateway's state directory: its id (generated once, named in heads it owns, in leases
 * and in status) and a lock, so two gateway processes never share one id.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type FileLock, tryLockFile } from "../runtime/file-lock.ts";

/** The id and the held lock of a gateway's state directory. */
export interface GatewayState {
  readonly dir: string;
  readonly id: string;
  readonly lock: FileLock;
}

/** The state directory is held by another running gateway. */
export class StateDirLockedError extends Error {
  override readonly name = "StateDirLockedError";
}

/** Gateway ids: readable, short, unique enough (`gw-` and 12 hex digits). */
const ID_PATTERN = /^gw-[0-9a-f]{12}$/;

/** Opens (creating if needed) the state directory `dir`; throws if another gateway holds it. */
export async function openGatewayState(dir: string): Promise<GatewayState> {
  await mkdir(dir, { recursive: true });
  const attempt = await tryLockFile(join(dir, "lock"), `gateway with state ${dir}`);
  if ("heldBy" in attempt)
    throw new StateDirLockedError(
      `The gateway state directory ${dir} is in use by another gateway (${attempt.heldBy}); one directory, one gateway`,
    );
  try {
    const file = join(dir, "gateway-id");
    let id = (await readFile(file, "utf8").catch(() => "")).trim();
    if (!ID_PATTERN.test(id)) {
      id = `gw-${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
      await writeFile(`${file}.tmp`, `${id}\n`);
      await rename(`${file}.tmp`, file);
    }
    return { dir, id, lock: attempt.lock };
  } catch (err) {
    attempt.lock.release();
    throw err;
  }
}
