/** Validation of ref names, shared by every backend and the server. */
import { REF_NAME_PATTERN } from "./limits.ts";

/** Throws a TypeError unless `name` is a valid ref name. */
export function assertRefName(name: unknown): asserts name is string {
  if (typeof name !== "string" || !REF_NAME_PATTERN.test(name)) {
    throw new TypeError(
      `Invalid ref name ${JSON.stringify(name)}: use 1-200 of A-Z a-z 0-9 . _ @ : = -, starting with a letter or digit`,
    );
  }
}
