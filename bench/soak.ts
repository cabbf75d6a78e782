/**
 * The fault test for as long as you like: `bun bench/soak.ts --minutes 30 [--seed N] [--gateways 2]`.
 * Runs seeded fault runs (test/support/fault-run.ts) back to back, each about five
 * minutes, with seeds N, N+1, ... and prints one line per run and a total (runs of odd
 * seeds start with a fourth head holder and remove it on the way). Any violation
 * prints the run's log and ends the soak with exit code 1; replay it with
 * `FAULT_SEED=<seed> bun test test/gateway/fault.test.ts`.
 */
import { runFaultTest } from "../test/support/fault-run.ts";

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const minutes = flag("minutes", 30);
const runMinutes = flag("run-minutes", 5);
const gateways = flag("gateways", 2);
let seed = flag("seed", Math.floor(Math.random() * 2 ** 31));
const end = Date.now() + minutes * 60_000;
const total = {
  runs: 0,
  steps: 0,
  faults: 0,
  takeovers: 0,
  acks: 0,
  safe: 0,
  acted: 0,
  maintenance: 0,
  lifecycle: 0,
  drained: 0,
  headHoldersRemoved: 0,
  gcPasses: 0,
  gcDeleted: 0,
  tombstones: 0,
  violations: 0,
};
console.log(`soak: ${minutes} min, runs of ${runMinutes} min, ${gateways} gateways, first seed ${seed}`);
while (Date.now() < end) {
  const left = end - Date.now();
  const r = await runFaultTest({ seed, gateways, deadlineMs: Math.min(runMinutes * 60_000, left) });
  total.runs++;
  total.steps += r.steps;
  total.faults += r.faults;
  total.takeovers += r.takeovers;
  total.acks += r.acknowledgedFlushes;
  total.safe += r.safeAnswers;
  total.acted += r.safeActedUpon;
  total.maintenance += r.maintenanceRuns;
  total.lifecycle += r.lifecycleChanges;
  total.drained += r.drainedActedUpon;
  if (r.headHolderRemoval === "done") total.headHoldersRemoved++;
  total.gcPasses += r.gcPasses;
  total.gcDeleted += r.gcDeleted;
  total.tombstones += r.tombstonesCollected;
  total.violations += r.violations.length;
  console.log(
    `seed ${seed}: ${r.steps} steps, ${r.faults} faults, ${r.takeovers} takeovers, ${r.acknowledgedFlushes} acknowledged flushes (${r.partialWrites} partial block writes), ${r.safeAnswers} safe answers (${r.safeActedUpon} acted upon), ${r.maintenanceRuns} maintenance runs, ${r.lifecycleChanges} store set changes (${r.drainedActedUpon} drained stores acted upon, head holder removal: ${r.headHolderRemoval}), ${r.gcPasses} gc passes (${r.gcDeleted} chunks deleted, ${r.tombstonesCollected} tombstones collected), ${r.foldedBlocks} blocks folded, ${r.violations.length} violations`,
  );
  if (r.violations.length) {
    console.log(r.log.join("\n"));
    console.log(`violations of seed ${seed}:\n${r.violations.join("\n")}`);
    break;
  }
  seed++;
}
console.log(
  `soak total: ${total.runs} runs, ${total.steps} steps, ${total.faults} faults, ${total.takeovers} takeovers, ${total.acks} acknowledged flushes, ${total.safe} safe answers, ${total.acted} acted upon, ${total.maintenance} maintenance runs, ${total.lifecycle} store set changes (${total.drained} drained acted upon, ${total.headHoldersRemoved} head holders removed), ${total.gcPasses} gc passes (${total.gcDeleted} chunks deleted, ${total.tombstones} tombstones collected), ${total.violations} violations`,
);
process.exit(total.violations ? 1 : 0);
