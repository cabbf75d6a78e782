/**
 * Colour only on a terminal: imported first by `main.ts`, before citty (which decides once,
 * when loaded, and only honours NO_COLOR=1). Any non-empty NO_COLOR (no-color.org), or an
 * output that is not a terminal (a pipe, a file), turns colour off; FORCE_COLOR keeps it.
 */
const env = process.env;
const wanted = env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0";
if (!wanted && ((env.NO_COLOR ?? "") !== "" || !process.stdout.isTTY || !process.stderr.isTTY))
  env.NO_COLOR = "1";
