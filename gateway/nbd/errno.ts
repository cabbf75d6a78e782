/**
 * The one mapping from errors thrown by a block device to NBD error values.
 * Errors are recognised by `name` so this layer does not import the image or
 * chunk store layers (and DOMException names work across runtimes).
 *
 * @module
 */
import { NBD_ERRNO } from "./constants.ts";

/** An NBD error value (proto.md "Error values"). */
export type NbdErrno = (typeof NBD_ERRNO)[keyof typeof NBD_ERRNO];

/**
 * Maps a thrown value to the NBD error to put in the reply.
 *
 * - RangeError (bad offset, length or argument): EINVAL
 * - StoreFullError, QuotaExceededError (no space for new data): ENOSPC
 * - ReadOnlyError, NotAllowedError (write to something read-only): EPERM
 * - NotSupportedError (e.g. a fast zero that would be slow): ENOTSUP
 * - anything else (stores unreachable, corrupt data, bugs): EIO
 *
 * @example
 * try { await device.write(off, data, { fua }) } catch (e) { reply(handle, errnoFor(e)) }
 */
export function errnoFor(error: unknown): NbdErrno {
  const name = error instanceof Error || error instanceof DOMException ? error.name : undefined;
  switch (name) {
    case "RangeError":
      return NBD_ERRNO.EINVAL;
    case "StoreFullError":
    case "QuotaExceededError":
      return NBD_ERRNO.ENOSPC;
    case "ReadOnlyError":
    case "NotAllowedError":
      return NBD_ERRNO.EPERM;
    case "NotSupportedError":
      return NBD_ERRNO.ENOTSUP;
    default:
      return NBD_ERRNO.EIO;
  }
}
