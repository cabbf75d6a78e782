/**
 * External tools the interop tests drive (qemu-img, qemu-io, nbdinfo, nbdcopy). A missing
 * tool fails the test with the exact line that installs it: never a silent skip.
 */

const PACKAGE_OF: Record<string, string> = {
  "qemu-img": "qemu-utils",
  "qemu-io": "qemu-utils",
  "qemu-nbd": "qemu-utils",
  nbdinfo: "libnbd-bin",
  nbdcopy: "libnbd-bin",
  "systemd-analyze": "systemd",
  "docker-compose": "docker-compose",
  aws: "awscli",
  rclone: "rclone",
  s3cmd: "s3cmd",
  curl: "curl",
};

/** Throws unless every tool is on PATH, naming the apt-get line that brings them. */
export function requireTools(...tools: string[]): void {
  const missing = tools.filter((t) => !Bun.which(t));
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((t) => PACKAGE_OF[t] ?? t))].join(" ");
    throw new Error(`Missing ${missing.join(", ")}: run  apt-get update && apt-get install -y ${pkgs}`);
  }
}

/** Runs a command to completion; resolves with its exit code and output (stdout + stderr). */
export async function run(
  cmd: string[],
  options: { timeoutMs?: number; env?: Record<string, string | undefined> } = {},
): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(cmd, {
    stdout: "pipe",
    stderr: "pipe",
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeoutMs ?? 120_000);
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, out: out + err };
}

/** Runs a command and throws with its output unless it exits 0. */
export async function runOk(cmd: string[], options: { timeoutMs?: number } = {}): Promise<string> {
  const r = await run(cmd, options);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}:\n${r.out}`);
  return r.out;
}
