/**
 * Probe of a runtime's own client certificate check, without blockmend's adapter: a
 * node:net server that upgrades each accepted socket with `new tls.TLSSocket(socket,
 * { isServer: true, requestCert: true, rejectUnauthorized: true, ca })`, as a STARTTLS
 * server does. Prints `listening PORT`, then per connection `secure authorized=BOOL`
 * or `refused MESSAGE`. Run under Bun or Deno by runtime-tls.test.ts.
 *
 *   deno run -A test/gateway/nbd/_tls-verify-probe.ts SERVER_DIR
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import process from "node:process";
import tls from "node:tls";

const dir = process.argv[2]!;
const read = (name: string) => readFileSync(join(dir, name), "utf8");
const secureContext = tls.createSecureContext({
  ca: read("ca-cert.pem"),
  cert: read("server-cert.pem"),
  key: read("server-key.pem"),
});
const server = net.createServer((socket) => {
  socket.pause();
  const secure = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext,
    requestCert: true,
    rejectUnauthorized: true,
  });
  secure.once("secure", () => {
    console.log(`secure authorized=${secure.authorized}`);
    secure.end("ok");
  });
  secure.once("error", (error) => {
    console.log(`refused ${error.message}`);
    socket.destroy();
  });
});
server.listen(0, "127.0.0.1", () => console.log(`listening ${(server.address() as net.AddressInfo).port}`));
