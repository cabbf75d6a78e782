#!/usr/bin/env node
// Container and service health check: exits 0 when GET URL answers 2xx within 3 s, else 1.
// With TOKEN_FILE, sends its contents as the bearer token (a chunk store with --token-file
// answers nothing, not even /v1/health, without it). Plain JavaScript with no dependencies,
// so it runs on Node, Bun or Deno.
//
//   node deploy/healthcheck.js http://127.0.0.1:9400/v1/health /run/secrets/store-token
import { readFileSync } from "node:fs";

const [url, tokenFile] = process.argv.slice(2);
if (!url) {
  console.error("usage: healthcheck.js URL [TOKEN_FILE]");
  process.exit(2);
}
const headers = tokenFile ? { authorization: `Bearer ${readFileSync(tokenFile, "utf8").trim()}` } : {};
try {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(3000) });
  if (!res.ok) console.error(`healthcheck: ${url} answered ${res.status}`);
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  console.error(`healthcheck: ${url}: ${err.message}`);
  process.exit(1);
}
