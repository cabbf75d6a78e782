/**
 * Encryption of a repository (scheme in `repository-format.ts`, ENCRYPTION_SCHEME), with
 * WebCrypto only, so it runs the same on Bun and Deno. A repository without encryption
 * uses {@link PLAIN}: sealing is the identity and names are the ids themselves.
 */
import { Buffer } from "node:buffer";
import { RepositoryKeyError } from "./backup-errors.ts";
import { HKDF_INFO, KEY_BYTES, NONCE_BYTES, TAG_BYTES } from "./repository-format.ts";

/** Seals and opens objects and blobs, and names objects. */
export interface RepositoryCipher {
  readonly encrypted: boolean;
  /** `nonce || AES-256-GCM(plain) || tag` with a fresh random nonce (identity when plain). */
  seal(plain: Uint8Array, aad?: Uint8Array): Promise<Uint8Array>;
  /** The inverse of {@link seal}; throws RepositoryKeyError when the tag does not verify. */
  open(sealed: Uint8Array, aad?: Uint8Array): Promise<Uint8Array>;
  /** An object's name for `kind:id`: hex HMAC-SHA256 when encrypted, `id` when plain. */
  name(kind: string, id: string): Promise<string>;
  /** Extra bytes {@link seal} adds. */
  readonly overhead: number;
}

/** No encryption. */
export const PLAIN: RepositoryCipher = {
  encrypted: false,
  overhead: 0,
  seal: async (plain) => plain,
  open: async (sealed) => sealed,
  name: async (_kind, id) => id,
};

/** A new random key, as the text of a key file (64 hex characters and a newline). */
export function generateKeyFile(): string {
  return `${Buffer.from(crypto.getRandomValues(new Uint8Array(KEY_BYTES))).toString("hex")}\n`;
}

/** The 32 key bytes of a key file's text: 64 hex characters, or base64 of 32 bytes. */
export function parseKeyFile(text: string): Uint8Array {
  const t = text.trim();
  let bytes: Uint8Array | null = null;
  if (/^[0-9a-fA-F]{64}$/.test(t)) bytes = Uint8Array.from(Buffer.from(t, "hex"));
  else if (/^[A-Za-z0-9+/=_-]{43,44}$/.test(t)) bytes = Uint8Array.from(Buffer.from(t, "base64"));
  if (!bytes || bytes.byteLength !== KEY_BYTES)
    throw new TypeError(
      `A backup key file holds ${KEY_BYTES} random bytes as 64 hex characters (make one with: blockmend backup keygen FILE)`,
    );
  return bytes;
}

/** The cipher of an encrypted repository: keys derived from `key` with the repository's `salt`. */
export async function encryptionCipher(key: Uint8Array, salt: Uint8Array): Promise<RepositoryCipher> {
  const subtle = crypto.subtle;
  const base = await subtle.importKey("raw", key as BufferSource, "HKDF", false, ["deriveKey"]);
  const hkdf = (info: string) => ({
    name: "HKDF",
    hash: "SHA-256",
    salt: salt as BufferSource,
    info: new TextEncoder().encode(info),
  });
  const aes = await subtle.deriveKey(hkdf(HKDF_INFO.data), base, { name: "AES-GCM", length: 256 }, false, [
    "encrypt",
    "decrypt",
  ]);
  const hmac = await subtle.deriveKey(
    hkdf(HKDF_INFO.names),
    base,
    { name: "HMAC", hash: "SHA-256", length: 256 },
    false,
    ["sign"],
  );
  const params = (iv: Uint8Array, aad?: Uint8Array) => ({
    name: "AES-GCM",
    iv: iv as BufferSource,
    tagLength: TAG_BYTES * 8,
    ...(aad && { additionalData: aad as BufferSource }),
  });
  return {
    encrypted: true,
    overhead: NONCE_BYTES + TAG_BYTES,
    async seal(plain, aad) {
      const iv = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
      const ct = new Uint8Array(await subtle.encrypt(params(iv, aad), aes, plain as BufferSource));
      const out = new Uint8Array(NONCE_BYTES + ct.byteLength);
      out.set(iv);
      out.set(ct, NONCE_BYTES);
      return out;
    },
    async open(sealed, aad) {
      if (sealed.byteLength < NONCE_BYTES + TAG_BYTES)
        throw new RepositoryKeyError(`A sealed object of ${sealed.byteLength} bytes is too short`);
      try {
        return new Uint8Array(
          await subtle.decrypt(
            params(sealed.subarray(0, NONCE_BYTES), aad),
            aes,
            sealed.subarray(NONCE_BYTES) as BufferSource,
          ),
        );
      } catch (err) {
        throw new RepositoryKeyError("AES-256-GCM authentication failed (a wrong key, or damaged bytes)", {
          cause: err,
        });
      }
    },
    async name(kind, id) {
      const mac = await subtle.sign("HMAC", hmac, new TextEncoder().encode(`${kind}:${id}`));
      return Buffer.from(mac).toString("hex");
    },
  };
}
