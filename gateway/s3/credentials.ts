/**
 * S3 access keys: the `--s3-credentials` file (one `ACCESS_KEY_ID:SECRET_ACCESS_KEY` a
 * line; blank lines and `#` comments ignored) and generated key pairs.
 */

/** Access key id -> secret access key. */
export type S3Credentials = ReadonlyMap<string, string>;

/** Access key ids: what AWS and MinIO issue (letters, digits, a few marks), no `:` or `/`. */
const ACCESS_KEY_PATTERN = /^[A-Za-z0-9._~+=-]{3,128}$/;

/** Parses a credentials file's text; throws a TypeError naming the line of the first bad entry. */
export function parseCredentials(text: string, source = "credentials file"): S3Credentials {
  const out = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const colon = line.indexOf(":");
    const id = line.slice(0, colon);
    const secret = line.slice(colon + 1);
    if (colon <= 0 || !ACCESS_KEY_PATTERN.test(id) || secret.length < 8) {
      throw new TypeError(
        `${source} line ${i + 1} is not ACCESS_KEY_ID:SECRET_ACCESS_KEY (an id of 3-128 letters, digits or ._~+=-, a secret of at least 8 characters)`,
      );
    }
    if (out.has(id)) throw new TypeError(`${source} line ${i + 1}: access key "${id}" appears twice`);
    out.set(id, secret);
  });
  if (out.size === 0) throw new TypeError(`${source} holds no ACCESS_KEY_ID:SECRET_ACCESS_KEY line`);
  return out;
}

/** A fresh random key pair as a credentials file line (20-character id, 40-character secret, like AWS's). */
export function generateCredentialsLine(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const id = Array.from(crypto.getRandomValues(new Uint8Array(20)), (b) => alphabet[b % 36]).join("");
  const secret = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(30))))
    .replaceAll("+", "A")
    .replaceAll("/", "B");
  return `${id}:${secret}`;
}
