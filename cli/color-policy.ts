/**
 * Colour only on a terminal: imported first by `main.ts`, before citty (which decides once,
 * when loaded, and turns colour off for NO_COLOR=1, TERM=dumb, or any CI or TEST variable).
 * Our rule: any non-empty NO_COLOR (no-color.org), TERM=dumb, or an output that is not a
 * terminal (a pipe, a file) turns colour off; FORCE_COLOR (not "0") turns it on. A terminal
 * on a CI machine is still a terminal, so CI and TEST are hidden from citty while it loads
 * and put back by `restoreHiddenVariables()` right after.
 */
const env = process.env;
const forced = env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0";
const plain =
  !forced &&
  ((env.NO_COLOR ?? "") !== "" || env.TERM === "dumb" || !process.stdout.isTTY || !process.stderr.isTTY);
const hidden: Record<string, string> = {};
if (plain) env.NO_COLOR = "1";
else {
  for (const name of ["CI", "TEST", ...(env.TERM === "dumb" ? ["TERM"] : [])]) {
    const value = env[name];
    if (value !== undefined) {
      hidden[name] = value;
      delete env[name];
    }
  }
}

/** Puts back the variables hidden from citty's colour check; call once citty has loaded. */
export function restoreHiddenVariables(): void {
  Object.assign(env, hidden);
}
