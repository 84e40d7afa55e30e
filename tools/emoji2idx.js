#!/usr/bin/env node
// Cuts the 32x32 colour emoji of the npm package `emoji-datasource-google`
// 16.0.0 (code MIT; the images are Google's Noto Emoji, Apache License 2.0)
// out of its sheet into IDX files diffusion.h reads (dfn_idx_load; colour:
// dfn_idx_images_mem_c):
//
//   train-images-idx4-ubyte  (n, 32, 32, 3) RGB bytes   train-labels-idx1-ubyte
//   t10k-images-idx4-ubyte   (n, 32, 32, 3)             t10k-labels-idx1-ubyte
//   categories.txt           the label names, one per line (label 0 first)
//
// Usage: node tools/emoji2idx.js <unpacked package dir> <output dir>
//
// The images: every emoji of emoji.json with has_img_google, without its
// 1,875 skin-tone variants (they would make People & Body 60% of the set), and
// without the 5 of the "Component" category (skin swatches, hair parts):
// 1,906 emoji in 9 categories. Each is cut from img/google/sheets-clean/32.png,
// a grid of 34x34 cells (the 32x32 image and a pixel of padding on each
// side) at (34 sheet_x + 1, 34 sheet_y + 1). Transparent pixels are
// composited on white: c' = round((c a + 255 (255 - a)) / 255), so the
// files hold RGB only. The split is fixed: in each category, in the order
// of sort_order, every 10th emoji (the 10th, 20th, ...) is held out as the
// test set; each set is then shuffled with a fixed-seed LCG (as
// tools/mnist2idx.js), so the files are the same bytes everywhere.
//
// The PNG decoder is plain Node.js (zlib, which Node ships, inflates the
// IDAT stream): 8-bit RGBA (colour type 6) or RGB (2), not interlaced; the
// signature, every chunk's CRC-32, IHDR's fields and the inflated size are
// checked, and anything else is refused with a message. Files are written
// to "<name>.tmp" and renamed.
'use strict';

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const SIDE = 32;                   // image side in the sheet used
const CELL = SIDE + 2;             // one pixel of padding on each side
const SHEET = path.join('img', 'google', 'sheets-clean', SIDE + '.png');
// Labels 0..8, in the order of the emoji picker (categories.json).
const CATEGORIES = ['Smileys & Emotion', 'People & Body', 'Animals & Nature', 'Food & Drink',
                    'Travel & Places', 'Activities', 'Objects', 'Symbols', 'Flags'];
const SKIPPED = ['Component'];
const HOLD_OUT = 10;               // every 10th emoji of a category is a test image
const SEED_TRAIN = 20161, SEED_TEST = 7919;

class EmojiError extends Error {}
function fail(msg) { throw new EmojiError(msg); }

// CRC-32 of PNG (ISO 3309, polynomial 0xEDB88320, reflected).
const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
        let c = n;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
        t[n] = c >>> 0;
    }
    return t;
})();
function crc32(buf) {
    let c = 0xFFFFFFFF;
    for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xFF] ^ (c >>> 8);
    return (c ^ 0xFFFFFFFF) >>> 0;
}

const PNG_SIGNATURE = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);

// Decodes a PNG file into { width, height, channels (4), pixels: RGBA bytes }.
// RGB files get an alpha of 255. Throws EmojiError on anything else.
function decodePng(file, name) {
    name = name || 'png';
    if (!Buffer.isBuffer(file) || file.length < 8 || !file.subarray(0, 8).equals(PNG_SIGNATURE))
        fail(name + ': not a PNG file (bad signature)');
    let pos = 8, ihdr = null, ended = false;
    const idat = [];
    while (pos < file.length) {
        if (file.length - pos < 12) fail(name + ': truncated chunk at byte ' + pos);
        const len = file.readUInt32BE(pos);
        const type = file.toString('latin1', pos + 4, pos + 8);
        if (len > 0x7FFFFFFF || file.length - pos - 12 < len)
            fail(name + ': chunk ' + JSON.stringify(type) + ' at byte ' + pos + ' runs past the end');
        const body = file.subarray(pos + 8, pos + 8 + len);
        const want = file.readUInt32BE(pos + 8 + len);
        if (crc32(file.subarray(pos + 4, pos + 8 + len)) !== want)
            fail(name + ': CRC mismatch in chunk ' + JSON.stringify(type) + ' at byte ' + pos);
        if (ihdr === null && type !== 'IHDR') fail(name + ': the first chunk is not IHDR');
        if (type === 'IHDR') {
            if (ihdr !== null) fail(name + ': two IHDR chunks');
            if (len !== 13) fail(name + ': IHDR of ' + len + ' bytes');
            ihdr = { width: body.readUInt32BE(0), height: body.readUInt32BE(4), depth: body[8],
                     colour: body[9], compression: body[10], filter: body[11], interlace: body[12] };
        } else if (type === 'IDAT') {
            idat.push(body);
        } else if (type === 'IEND') {
            ended = true;
            pos += 12 + len;
            break;
        } else if ((type.charCodeAt(0) & 0x20) === 0) {
            fail(name + ': unknown critical chunk ' + JSON.stringify(type));
        }
        pos += 12 + len;
    }
    if (!ihdr) fail(name + ': no IHDR');
    if (!ended) fail(name + ': no IEND (truncated file?)');
    const { width, height } = ihdr;
    if (width < 1 || height < 1 || width > 16384 || height > 16384)
        fail(name + ': size ' + width + 'x' + height + ' (1..16384 supported)');
    if (ihdr.depth !== 8 || (ihdr.colour !== 6 && ihdr.colour !== 2))
        fail(name + ': bit depth ' + ihdr.depth + ', colour type ' + ihdr.colour +
             ' (only 8-bit RGBA (6) or RGB (2) are read)');
    if (ihdr.compression !== 0 || ihdr.filter !== 0) fail(name + ': unknown compression or filter method');
    if (ihdr.interlace !== 0) fail(name + ': interlaced PNGs are not read');
    if (idat.length === 0) fail(name + ': no IDAT');
    const bpp = ihdr.colour === 6 ? 4 : 3, stride = width * bpp;
    let raw;
    try {
        raw = zlib.inflateSync(Buffer.concat(idat), { maxOutputLength: height * (stride + 1) + 1 });
    } catch (e) {
        fail(name + ': bad compressed data (' + e.message + ')');
    }
    if (raw.length !== height * (stride + 1))
        fail(name + ': ' + raw.length + ' bytes of image data, expected ' + height * (stride + 1));
    // Undo the per-line filters (PNG spec section 9): a = left, b = up, c = up-left.
    const out = Buffer.alloc(width * height * 4);
    let prev = Buffer.alloc(stride), cur = Buffer.alloc(stride);
    for (let y = 0; y < height; y++) {
        const f = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
        if (f > 4) fail(name + ': filter type ' + f + ' on line ' + y);
        for (let i = 0; i < stride; i++) {
            const a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
            let p;
            switch (f) {
            case 0: p = 0; break;
            case 1: p = a; break;
            case 2: p = b; break;
            case 3: p = (a + b) >> 1; break;
            default: {
                const q = a + b - c, pa = Math.abs(q - a), pb = Math.abs(q - b), pc = Math.abs(q - c);
                p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
            }
            }
            cur[i] = (line[i] + p) & 0xFF;
        }
        for (let x = 0; x < width; x++)
            for (let k = 0; k < 4; k++)
                out[(y * width + x) * 4 + k] = k < bpp ? cur[x * bpp + k] : 255;
        const t = prev; prev = cur; cur = t;
    }
    return { width, height, channels: 4, pixels: out };
}

// The emoji to cut, in sort_order: [{ name, category, label, sx, sy }].
function selectEmoji(list) {
    if (!Array.isArray(list)) fail('emoji.json: not an array');
    const chosen = [];
    for (const e of list) {
        if (!e || typeof e !== 'object') fail('emoji.json: an entry is not an object');
        if (!e.has_img_google) continue;
        if (SKIPPED.includes(e.category)) continue;
        const label = CATEGORIES.indexOf(e.category);
        if (label < 0) fail('emoji.json: unknown category ' + JSON.stringify(e.category) + ' (' + e.short_name + ')');
        if (!Number.isInteger(e.sheet_x) || !Number.isInteger(e.sheet_y) || e.sheet_x < 0 || e.sheet_y < 0 ||
            !Number.isFinite(e.sort_order))
            fail('emoji.json: ' + e.short_name + ' has no sheet position or sort order');
        chosen.push({ name: String(e.short_name), category: e.category, label,
                      sx: e.sheet_x, sy: e.sheet_y, order: e.sort_order });
    }
    chosen.sort((p, q) => p.order - q.order);
    return chosen;
}

// One emoji's 32x32 RGB bytes, composited on white.
function cut(sheet, e) {
    const x0 = e.sx * CELL + 1, y0 = e.sy * CELL + 1;
    if (x0 + SIDE > sheet.width || y0 + SIDE > sheet.height)
        fail(e.name + ': sheet cell (' + e.sx + ', ' + e.sy + ') lies outside the ' + sheet.width + 'x' +
             sheet.height + ' sheet');
    const rgb = Buffer.alloc(SIDE * SIDE * 3);
    let opaque = 0;
    for (let y = 0; y < SIDE; y++)
        for (let x = 0; x < SIDE; x++) {
            const s = ((y0 + y) * sheet.width + x0 + x) * 4, a = sheet.pixels[s + 3];
            if (a) opaque++;
            for (let k = 0; k < 3; k++)
                rgb[(y * SIDE + x) * 3 + k] = Math.round((sheet.pixels[s + k] * a + 255 * (255 - a)) / 255);
        }
    if (opaque === 0) fail(e.name + ': its sheet cell (' + e.sx + ', ' + e.sy + ') is empty');
    return rgb;
}

// x -> 1664525 x + 1013904223 mod 2^32; Fisher-Yates with j = x mod (i + 1).
function shuffle(items, seed) {
    let x = seed >>> 0;
    for (let i = items.length - 1; i > 0; i--) {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        const j = x % (i + 1);
        const t = items[i]; items[i] = items[j]; items[j] = t;
    }
    return items;
}

function idx(dims, body) {
    const head = Buffer.alloc(4 + 4 * dims.length);
    head[2] = 0x08;                      // unsigned bytes
    head[3] = dims.length;
    dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
    return Buffer.concat([head, body]);
}

function writeAtomic(file, data) {
    fs.writeFileSync(file + '.tmp', data);
    fs.renameSync(file + '.tmp', file);
}

// Reads the package in pkgDir, writes the files to outDir; returns counts.
function convert(pkgDir, outDir) {
    let list;
    const jsonPath = path.join(pkgDir, 'emoji.json');
    try {
        list = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
    } catch (e) {
        fail('cannot read ' + jsonPath + ': ' + e.message);
    }
    const chosen = selectEmoji(list);
    if (chosen.length === 0) fail('emoji.json: no emoji with a Google image');
    const sheetPath = path.join(pkgDir, SHEET);
    let file;
    try { file = fs.readFileSync(sheetPath); } catch (e) { fail('cannot read ' + sheetPath + ': ' + e.message); }
    const sheet = decodePng(file, sheetPath);
    const seen = new Array(CATEGORIES.length).fill(0), train = [], test = [];
    for (const e of chosen) {
        const item = { label: e.label, rgb: cut(sheet, e) };
        seen[e.label]++;
        (seen[e.label] % HOLD_OUT === 0 ? test : train).push(item);
    }
    shuffle(train, SEED_TRAIN);
    shuffle(test, SEED_TEST);
    fs.mkdirSync(outDir, { recursive: true });
    for (const [set, items] of [['train', train], ['t10k', test]]) {
        writeAtomic(path.join(outDir, set + '-images-idx4-ubyte'),
                    idx([items.length, SIDE, SIDE, 3], Buffer.concat(items.map(i => i.rgb))));
        writeAtomic(path.join(outDir, set + '-labels-idx1-ubyte'),
                    idx([items.length], Buffer.from(items.map(i => i.label))));
    }
    writeAtomic(path.join(outDir, 'categories.txt'), CATEGORIES.join('\n') + '\n');
    return { train: train.length, test: test.length, perClass: seen };
}

module.exports = { decodePng, crc32, selectEmoji, cut, convert, CATEGORIES, SIDE, CELL, EmojiError };

if (require.main === module) {
    if (process.argv.length !== 4) {
        process.stderr.write('usage: node tools/emoji2idx.js <package dir> <output dir>\n');
        process.exit(2);
    }
    try {
        const r = convert(process.argv[2], process.argv[3]);
        console.log('emoji2idx: ' + (r.train + r.test) + ' emoji (train ' + r.train + ', test ' + r.test + ') in ' +
                    CATEGORIES.length + ' categories: ' +
                    CATEGORIES.map((c, i) => c + ' ' + r.perClass[i]).join(', '));
    } catch (e) {
        if (!(e instanceof EmojiError)) throw e;
        process.stderr.write('emoji2idx: ' + e.message + '\n');
        process.exit(1);
    }
}
