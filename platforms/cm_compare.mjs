// Compares two firmware outputs (lines "sample XXXXXXXX YYYYYYYY", float bit
// patterns) within an absolute tolerance:
//   node platforms/cm_compare.mjs host.out target.out 1e-3
// Prints the largest difference; exit 1 when it exceeds the tolerance or the
// sample counts differ.
import { readFileSync } from 'node:fs';

const [a, b, tolText] = process.argv.slice(2);
const tol = Number(tolText);
const view = new DataView(new ArrayBuffer(4));
const samples = (file) => readFileSync(file, 'utf8').split('\n')
  .filter((l) => l.startsWith('sample '))
  .flatMap((l) => l.split(' ').slice(1).map((h) => { view.setUint32(0, parseInt(h, 16)); return view.getFloat32(0); }));
const x = samples(a), y = samples(b);
let worst = x.length === y.length && x.length > 0 ? 0 : Infinity;
for (let i = 0; i < Math.min(x.length, y.length); i++) {
  const d = Math.abs(x[i] - y[i]);
  worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
}
console.log(`${x.length} values, largest difference ${worst.toExponential(3)} (tolerance ${tol})`);
process.exit(worst <= tol ? 0 : 1);
