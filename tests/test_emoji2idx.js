#!/usr/bin/env node
// Tests of tools/emoji2idx.js (make emoji-data's sheet cutter), run by
// `make test`: a small package made here (emoji.json and a sheet PNG
// encoded here, with every PNG line filter written out from the
// specification and zlib's deflate), cut, and the IDX files read back byte
// by byte; then broken files, each of which must be refused with a message.
// Plain Node.js; prints "N passed, N failed" like the C runner.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const { execFileSync } = require('child_process');
const E = require('../tools/emoji2idx.js');

let passed = 0, failed = 0;
function check(cond, what) {
    if (cond) passed++;
    else { failed++; console.log('FAIL ' + what); }
}
function refuses(fn, pattern, what) {
    try {
        fn();
        check(false, what + ': not refused');
    } catch (e) {
        check(e instanceof E.EmojiError && pattern.test(e.message), what + ': ' + e.message);
    }
}

// CRC-32, bit by bit (no table: another route than the tool's).
function crc(buf) {
    let c = ~0 >>> 0;
    for (const b of buf) {
        c ^= b;
        for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xEDB88320 & -(c & 1));
    }
    return (~c) >>> 0;
}
function chunk(type, body) {
    const head = Buffer.alloc(8), tail = Buffer.alloc(4);
    head.writeUInt32BE(body.length, 0);
    head.write(type, 4, 'latin1');
    tail.writeUInt32BE(crc(Buffer.concat([head.subarray(4), body])), 0);
    return Buffer.concat([head, body, tail]);
}
// A PNG of pixels (w * h * bpp bytes), line y filtered with type y % 5
// (PNG specification section 9.2: the filter subtracts its predictor).
function encodePng(pixels, w, h, bpp, opts) {
    opts = opts || {};
    const stride = w * bpp, raw = Buffer.alloc(h * (stride + 1));
    for (let y = 0; y < h; y++) {
        const f = y % 5;
        raw[y * (stride + 1)] = f;
        for (let i = 0; i < stride; i++) {
            const x = pixels[y * stride + i];
            const a = i >= bpp ? pixels[y * stride + i - bpp] : 0;
            const b = y > 0 ? pixels[(y - 1) * stride + i] : 0;
            const c = i >= bpp && y > 0 ? pixels[(y - 1) * stride + i - bpp] : 0;
            let pred = 0;
            if (f === 1) pred = a;
            else if (f === 2) pred = b;
            else if (f === 3) pred = Math.floor((a + b) / 2);
            else if (f === 4) {
                const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
                pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
            }
            raw[y * (stride + 1) + 1 + i] = (x - pred + 256) % 256;
        }
    }
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr[8] = 8;
    ihdr[9] = opts.colour !== undefined ? opts.colour : bpp === 4 ? 6 : 2;
    ihdr[12] = opts.interlace || 0;
    const z = zlib.deflateSync(raw);
    const half = z.length >> 1;              // two IDAT chunks: the decoder joins them
    return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
                          chunk('tEXt', Buffer.from('Comment\0made by the test')),
                          chunk('IDAT', z.subarray(0, half)), chunk('IDAT', z.subarray(half)),
                          chunk('IEND', Buffer.alloc(0))]);
}

// A pseudo-random byte stream (xorshift32).
let state = 12345;
function rnd() {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state & 0xFF;
}

// ---- the decoder on every filter, RGBA and RGB ----
for (const bpp of [4, 3]) {
    const w = 7, h = 11, px = Buffer.alloc(w * h * bpp);
    for (let i = 0; i < px.length; i++) px[i] = rnd();
    const img = E.decodePng(encodePng(px, w, h, bpp), 'test');
    let same = img.width === w && img.height === h;
    for (let p = 0; p < w * h; p++)
        for (let k = 0; k < 4; k++)
            same = same && img.pixels[p * 4 + k] === (k < bpp ? px[p * bpp + k] : 255);
    check(same, 'decode ' + bpp + ' channels, filters 0-4');
}
check(E.crc32(Buffer.from('123456789')) === 0xCBF43926, 'CRC-32 check value');

// ---- a package: a 4x4-cell sheet ----
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emoji2idx-'));
const pkg = path.join(dir, 'package'), out = path.join(dir, 'out');
fs.mkdirSync(path.join(pkg, 'img', 'google', 'sheets-clean'), { recursive: true });
const CELLS = 4, W = CELLS * E.CELL;
const sheet = Buffer.alloc(W * W * 4);
for (let i = 0; i < sheet.length; i++) sheet[i] = rnd();
for (let p = 0; p < W * W; p++) if (p % 7 === 0) sheet[p * 4 + 3] = 0;      // some fully transparent
for (let p = 0; p < W * W; p++) if (p % 11 === 0) sheet[p * 4 + 3] = 255;   // and some opaque pixels
const list = [];
// cells 0..10: 11 Objects, sort orders descending (the tool sorts them)
for (let k = 0; k < 11; k++)
    list.push({ short_name: 'obj' + k, category: 'Objects', has_img_google: true,
                sheet_x: k % CELLS, sheet_y: Math.floor(k / CELLS), sort_order: 100 - k });
list.push({ short_name: 'smile', category: 'Smileys & Emotion', has_img_google: true, sheet_x: 3, sheet_y: 2, sort_order: 5 });
list.push({ short_name: 'flag', category: 'Flags', has_img_google: true, sheet_x: 0, sheet_y: 3, sort_order: 6 });
list.push({ short_name: 'tone', category: 'Component', has_img_google: true, sheet_x: 1, sheet_y: 3, sort_order: 7 });
list.push({ short_name: 'none', category: 'Objects', has_img_google: false, sheet_x: 2, sheet_y: 3, sort_order: 8 });
function writePackage(l, png) {
    fs.writeFileSync(path.join(pkg, 'emoji.json'), typeof l === 'string' ? l : JSON.stringify(l));
    fs.writeFileSync(path.join(pkg, 'img', 'google', 'sheets-clean', '32.png'), png);
}
const png = encodePng(sheet, W, W, 4);
writePackage(list, png);

// The expected image of a cell: composited on white in double, rounded half up.
function expected(sx, sy) {
    const b = Buffer.alloc(32 * 32 * 3);
    for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) {
            const s = ((sy * E.CELL + 1 + y) * W + sx * E.CELL + 1 + x) * 4, a = sheet[s + 3] / 255;
            for (let k = 0; k < 3; k++) b[(y * 32 + x) * 3 + k] = Math.floor(sheet[s + k] * a + 255 * (1 - a) + 0.5);
        }
    return b;
}

const r = E.convert(pkg, out);
check(r.train === 12 && r.test === 1, 'split: train ' + r.train + ', test ' + r.test);
function readIdx(file, dims) {
    const b = fs.readFileSync(path.join(out, file));
    const ok = b[0] === 0 && b[1] === 0 && b[2] === 8 && b[3] === dims.length &&
               dims.every((d, i) => b.readUInt32BE(4 + 4 * i) === d) &&
               b.length === 4 + 4 * dims.length + dims.reduce((p, d) => p * d, 1);
    check(ok, file + ': IDX header and length');
    return b.subarray(4 + 4 * dims.length);
}
const trainPx = readIdx('train-images-idx4-ubyte', [12, 32, 32, 3]);
const trainLab = readIdx('train-labels-idx1-ubyte', [12]);
const testPx = readIdx('t10k-images-idx4-ubyte', [1, 32, 32, 3]);
const testLab = readIdx('t10k-labels-idx1-ubyte', [1]);
// Each written image is exactly one expected cell, each cell once.
const wanted = list.filter(e => e.has_img_google && e.category !== 'Component');
const found = new Map();
function match(pxs, labs, n, set) {
    for (let i = 0; i < n; i++) {
        const img = pxs.subarray(i * 3072, (i + 1) * 3072);
        const e = wanted.find(q => expected(q.sheet_x, q.sheet_y).equals(img));
        check(e !== undefined, set + ' image ' + i + ' is one of the cells');
        if (!e) continue;
        check(!found.has(e.short_name), e.short_name + ' written once');
        found.set(e.short_name, set);
        check(labs[i] === E.CATEGORIES.indexOf(e.category), e.short_name + ' label ' + labs[i]);
    }
}
match(trainPx, trainLab, 12, 'train');
match(testPx, testLab, 1, 'test');
check(found.size === 12 + 1, 'every cell found');
// The 10th Object in sort order (sort_order 100 - k ascending: obj10, obj9, ..., obj1 is the 10th).
check(found.get('obj1') === 'test', 'the 10th of a category is held out');
check(fs.readFileSync(path.join(out, 'categories.txt'), 'utf8').split('\n')[0] === 'Smileys & Emotion' &&
      fs.readFileSync(path.join(out, 'categories.txt'), 'utf8').split('\n').length === 10, 'categories.txt');
// The same bytes on a second run.
const again = path.join(dir, 'again');
E.convert(pkg, again);
check(['train-images-idx4-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx4-ubyte'].every(
          f => fs.readFileSync(path.join(out, f)).equals(fs.readFileSync(path.join(again, f)))),
      'deterministic');

// ---- bad files ----
refuses(() => E.decodePng(Buffer.from('GIF89a....'), 't'), /signature/, 'not a PNG');
{
    const bad = Buffer.from(png);
    bad[bad.length - 30] ^= 1;                                   // inside the last IDAT
    refuses(() => E.decodePng(bad, 't'), /CRC mismatch/, 'flipped bit');
}
refuses(() => E.decodePng(png.subarray(0, png.length - 12), 't'), /no IEND/, 'IEND cut off');
refuses(() => E.decodePng(png.subarray(0, 60), 't'), /runs past the end|truncated/, 'truncated');
{
    // compressed data that is not zlib, with a correct CRC
    const sig = png.subarray(0, 8), ihdr = png.subarray(8, 33);
    const junk = Buffer.concat([sig, ihdr, chunk('IDAT', Buffer.from([1, 2, 3, 4, 5, 6])), chunk('IEND', Buffer.alloc(0))]);
    refuses(() => E.decodePng(junk, 't'), /bad compressed data/, 'not zlib');
    // a zlib stream one line short
    const short = Buffer.concat([sig, ihdr, chunk('IDAT', zlib.deflateSync(Buffer.alloc((W - 1) * (W * 4 + 1)))),
                                 chunk('IEND', Buffer.alloc(0))]);
    refuses(() => E.decodePng(short, 't'), /bytes of image data/, 'short image data');
    const filt = Buffer.alloc(W * (W * 4 + 1));
    filt[0] = 5;
    const badFilter = Buffer.concat([sig, ihdr, chunk('IDAT', zlib.deflateSync(filt)), chunk('IEND', Buffer.alloc(0))]);
    refuses(() => E.decodePng(badFilter, 't'), /filter type 5/, 'filter type 5');
}
refuses(() => E.decodePng(encodePng(Buffer.alloc(4), 2, 2, 1, { colour: 0 }), 't'), /colour type 0/, 'grey');
refuses(() => E.decodePng(encodePng(Buffer.alloc(16), 2, 2, 4, { interlace: 1 }), 't'), /interlaced/, 'interlaced');
refuses(() => E.decodePng(Buffer.concat([png.subarray(0, 8), chunk('IEND', Buffer.alloc(0))]), 't'),
        /not IHDR/, 'no IHDR');
{
    const l2 = JSON.parse(JSON.stringify(list));
    l2[0].sheet_x = 9;
    writePackage(l2, png);
    refuses(() => E.convert(pkg, out), /outside/, 'cell outside the sheet');
    const l3 = JSON.parse(JSON.stringify(list));
    l3[0].category = 'Dinosaurs';
    writePackage(l3, png);
    refuses(() => E.convert(pkg, out), /unknown category/, 'unknown category');
    const l4 = JSON.parse(JSON.stringify(list));
    delete l4[0].sheet_y;
    writePackage(l4, png);
    refuses(() => E.convert(pkg, out), /no sheet position/, 'no position');
    writePackage('{"not": "a list"}', png);
    refuses(() => E.convert(pkg, out), /not an array/, 'not a list');
    writePackage('[{"short_name": ', png);
    refuses(() => E.convert(pkg, out), /cannot read/, 'broken JSON');
    // an emoji whose cell is empty (fully transparent)
    const clear = Buffer.from(sheet);
    for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) clear[((1 + y) * W + 1 + x) * 4 + 3] = 0;
    writePackage(list, encodePng(clear, W, W, 4));
    refuses(() => E.convert(pkg, out), /is empty/, 'empty cell');
}
// The command line: exit 1 and a message, nothing written.
{
    let code = 0, msg = '';
    const missing = path.join(dir, 'nothing');
    try {
        execFileSync(process.execPath, [path.join(__dirname, '..', 'tools', 'emoji2idx.js'), missing, path.join(dir, 'o2')],
                     { stdio: 'pipe' });
    } catch (e) {
        code = e.status;
        msg = String(e.stderr);
    }
    check(code === 1 && /emoji2idx: cannot read/.test(msg) && !fs.existsSync(path.join(dir, 'o2')),
          'command line: exit ' + code + ' ' + msg.trim());
}

fs.rmSync(dir, { recursive: true, force: true });
console.log(passed + ' passed, ' + failed + ' failed');
process.exit(failed ? 1 : 0);
