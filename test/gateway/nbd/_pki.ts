/**
 * Test certificates made with GnuTLS's certtool (what qemu's documentation uses), laid
 * out as qemu's `tls-creds-x509,dir=` expects: a server directory for `startNbdServer`
 * and client directories for qemu (`endpoint=client`) and libnbd (`tls-certificates=`).
 * A missing certtool fails with the install line.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireTools, runOk } from "../../support/tools.ts";

/** Every directory a TLS test needs. */
export interface TestPki {
  readonly root: string;
  /** ca-cert.pem, server-cert.pem, server-key.pem (CN localhost, SAN localhost and 127.0.0.1). */
  readonly server: string;
  /** ca-cert.pem, client-cert.pem, client-key.pem: a client the server's CA signed. */
  readonly client: string;
  /** ca-cert.pem only: verifies the server, has no certificate of its own. */
  readonly clientWithoutCert: string;
  /** The right ca-cert.pem, but a client certificate signed by another CA. */
  readonly clientOtherCa: string;
  /** ca-cert.pem of another CA: cannot verify the server. */
  readonly clientWrongCa: string;
  remove(): Promise<void>;
}

const INSTALL_GNUTLS = "apt-get update && apt-get install -y gnutls-bin";

/** Throws unless certtool is on PATH. */
export function requireCerttool(): void {
  if (!Bun.which("certtool")) throw new Error(`Missing certtool: run  ${INSTALL_GNUTLS}`);
}

async function certtool(args: string[]): Promise<void> {
  await runOk(["certtool", ...args], { timeoutMs: 30_000 });
}

/** A CA: its key and self-signed certificate in `dir`. */
async function makeCa(dir: string, cn: string): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${cn}-key.pem`);
  const cert = join(dir, `${cn}-cert.pem`);
  const template = join(dir, `${cn}.info`);
  await writeFile(template, `cn = ${cn}\nca\ncert_signing_key\nexpiration_days = 30\n`);
  await certtool(["--generate-privkey", "--key-type=ecdsa", "--no-text", "--outfile", key]);
  await certtool([
    "--generate-self-signed",
    "--load-privkey",
    key,
    "--template",
    template,
    "--outfile",
    cert,
  ]);
  return { cert, key };
}

/** A certificate signed by `ca`, written as `<name>-cert.pem` / `<name>-key.pem` into `outDir`. */
async function makeCert(
  ca: { cert: string; key: string },
  outDir: string,
  name: "server" | "client",
  templateText: string,
): Promise<void> {
  const key = join(outDir, `${name}-key.pem`);
  const cert = join(outDir, `${name}-cert.pem`);
  const template = join(outDir, `${name}.info`);
  await writeFile(template, templateText);
  await certtool(["--generate-privkey", "--key-type=ecdsa", "--no-text", "--outfile", key]);
  await certtool([
    "--generate-certificate",
    "--load-privkey",
    key,
    "--load-ca-certificate",
    ca.cert,
    "--load-ca-privkey",
    ca.key,
    "--template",
    template,
    "--outfile",
    cert,
  ]);
  await rm(template);
}

const SERVER_TEMPLATE =
  "organization = blockmend tests\ncn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\n" +
  "tls_www_server\nsigning_key\nexpiration_days = 30\n";
const CLIENT_TEMPLATE =
  "organization = blockmend tests\ncn = client1\ntls_www_client\nsigning_key\nexpiration_days = 30\n";

/** Makes two CAs and every directory of {@link TestPki} in a new temp dir. */
export async function makeTestPki(): Promise<TestPki> {
  requireCerttool();
  requireTools("qemu-img");
  const root = await mkdtemp(join(tmpdir(), "blockmend-pki-"));
  const cas = join(root, "cas");
  const dirs = {
    server: join(root, "server"),
    client: join(root, "client"),
    clientWithoutCert: join(root, "client-without-cert"),
    clientOtherCa: join(root, "client-other-ca"),
    clientWrongCa: join(root, "client-wrong-ca"),
  };
  for (const d of [cas, ...Object.values(dirs)]) await mkdir(d);
  const ca = await makeCa(cas, "ca");
  const other = await makeCa(cas, "other-ca");
  const caPem = await Bun.file(ca.cert).text();
  const otherPem = await Bun.file(other.cert).text();
  await makeCert(ca, dirs.server, "server", SERVER_TEMPLATE);
  await makeCert(ca, dirs.client, "client", CLIENT_TEMPLATE);
  await makeCert(other, dirs.clientOtherCa, "client", CLIENT_TEMPLATE);
  for (const d of [dirs.server, dirs.client, dirs.clientWithoutCert, dirs.clientOtherCa]) {
    await writeFile(join(d, "ca-cert.pem"), caPem);
  }
  await writeFile(join(dirs.clientWrongCa, "ca-cert.pem"), otherPem);
  return { root, ...dirs, remove: () => rm(root, { recursive: true, force: true }) };
}
