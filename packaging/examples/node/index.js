#!/usr/bin/env node
// Run a DenseStudio ONNX model file outside Python: onnxruntime-node + pure-JS decoders.
//
//   npm ci --ignore-scripts      (once; see README.md beside this file)
//   node index.js model.onnx part1.jpg part2.png ...
//
// Prints one JSON object per image: class, confidence, probabilities, the OK/NG/UNSURE
// decision (operating point, or UNSURE for a frame unfit to judge or an image unlike the
// training images, with the reason: "too dark", "overexposed", "out of focus", "flat",
// "unlike the training images") and the out-of-distribution score. Everything the model needs is read from the file itself: the
// JSON in its metadata_props ("densestudio.json").
//
// Preprocessing follows the stored definition exactly as DenseStudio (Pillow) does it:
// convert to L (ITU-R 601 luma, Pillow's fixed-point formula) or RGB, letterbox (scale to
// fit, keep the aspect ratio, centre on a pad_value canvas) or stretch, with Pillow's
// antialiased bilinear resampling re-implemented below (same coefficients, same 22-bit
// fixed-point rounding), then / 255. Differences that remain:
// - Pillow 13 sometimes runs the vertical pass first (this runner always starts with the
//   horizontal one), which moves a few pixels by one grey level when both axes shrink.
// - JPEG decoding: jpeg-js's IDCT and colour conversion differ from libjpeg-turbo by a grey
//   level or so, and Pillow decodes large JPEGs with DCT scaling ("draft" mode, 1/2, 1/4 or
//   1/8) where this runner decodes in full and averages s x s blocks instead.
// The test compares both with the Python predictions within a tolerance.
// - EXIF orientation is not applied here (line cameras do not write it).
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const jpeg = require('jpeg-js');
const { PNG } = require('pngjs');

// ---------------------------------------------------------------- model metadata
// ModelProto.metadata_props is field 14: repeated StringStringEntryProto {key = 1, value = 2}.
// A tiny protobuf walk reads it without a protobuf library (other fields are skipped).
function readVarint(buf, pos) {
  let result = 0;
  let shift = 1;
  for (;;) {
    const b = buf[pos++];
    result += (b & 0x7f) * shift;
    if (b < 0x80) return [result, pos];
    shift *= 128;
  }
}

function fields(buf, start, end, onField) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      [, pos] = readVarint(buf, pos);
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else if (wire === 2) {
      let len;
      [len, pos] = readVarint(buf, pos);
      onField(field, pos, pos + len);
      pos += len;
    } else {
      throw new Error('not an ONNX file (unexpected protobuf wire type ' + wire + ')');
    }
  }
}

function readMetadata(modelBytes) {
  const props = {};
  fields(modelBytes, 0, modelBytes.length, (field, s, e) => {
    if (field !== 14) return;
    let key = null;
    let value = null;
    fields(modelBytes, s, e, (f, a, b) => {
      if (f === 1) key = modelBytes.toString('utf8', a, b);
      if (f === 2) value = modelBytes.toString('utf8', a, b);
    });
    if (key !== null) props[key] = value;
  });
  if (!props['densestudio.json']) throw new Error('not a DenseStudio model file (no metadata)');
  const meta = JSON.parse(props['densestudio.json']);
  const prep = meta.preprocessing || {};
  const ok = meta.format === 'densestudio-model-1' && Array.isArray(meta.class_names) &&
    ['L', 'RGB'].includes(prep.mode) && ['letterbox', 'stretch'].includes(prep.fit) &&
    prep.width >= 16 && prep.width <= 4096 && prep.height >= 16 && prep.height <= 4096;
  if (!ok) throw new Error('not a usable DenseStudio model file (metadata)');
  return meta;
}

// ---------------------------------------------------------------- decoding
// Returns {width, height, data: RGBA Uint8Array, jpeg: bool}
function decode(file) {
  const bytes = fs.readFileSync(file);
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
    return { width: img.width, height: img.height, data: img.data, jpeg: true };
  }
  const img = PNG.sync.read(bytes);
  return { width: img.width, height: img.height, data: img.data, jpeg: false };
}

// Pillow's JPEG draft: the largest s in 8, 4, 2, 1 with size // s >= the canvas's long side.
function draftScale(w, h, side) {
  const scale = Math.min(Math.floor(w / side), Math.floor(h / side));
  for (const s of [8, 4, 2]) if (scale >= s) return s;
  return 1;
}

// RGBA -> channel planes (1 for L, 3 for RGB), uint8, row-major
function toMode(img, mode) {
  const n = img.width * img.height;
  const d = img.data;
  if (mode === 'L') {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      out[i] = (d[4 * i] * 19595 + d[4 * i + 1] * 38470 + d[4 * i + 2] * 7471 + 0x8000) >>> 16;
    }
    return [out];
  }
  const planes = [new Uint8Array(n), new Uint8Array(n), new Uint8Array(n)];
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) planes[c][i] = d[4 * i + c];
  return planes;
}

// Average s x s blocks (edge blocks partial): stands in for DCT-scaled decoding.
function blockReduce(plane, w, h, s) {
  const ow = Math.ceil(w / s);
  const oh = Math.ceil(h / s);
  const out = new Uint8Array(ow * oh);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let sum = 0;
      let n = 0;
      for (let yy = y * s; yy < Math.min(h, y * s + s); yy++) {
        for (let xx = x * s; xx < Math.min(w, x * s + s); xx++) {
          sum += plane[yy * w + xx];
          n++;
        }
      }
      out[y * ow + x] = Math.round(sum / n);
    }
  }
  return out;
}

// ---------------------------------------------------------------- Pillow's bilinear resize
const PRECISION_BITS = 32 - 8 - 2;

function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale; // bilinear (triangle) filter, support 1
  const bounds = [];
  const weights = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const k = new Float64Array(xmax);
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      k[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += k[x];
    }
    const fixed = new Int32Array(xmax);
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0.0 ? k[x] / ww : k[x];
      fixed[x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    bounds.push(xmin);
    weights.push(fixed);
  }
  return { bounds, weights };
}

function clip8(v) {
  const x = Math.floor(v / (1 << PRECISION_BITS));
  return x < 0 ? 0 : x > 255 ? 255 : x;
}

function resizePlane(plane, w, h, ow, oh) {
  let src = plane;
  let sw = w;
  if (ow !== w) { // horizontal pass
    const { bounds, weights } = coefficients(w, ow);
    const out = new Uint8Array(ow * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < ow; x++) {
        let acc = 1 << (PRECISION_BITS - 1);
        const k = weights[x];
        const base = y * w + bounds[x];
        for (let i = 0; i < k.length; i++) acc += src[base + i] * k[i];
        out[y * ow + x] = clip8(acc);
      }
    }
    src = out;
    sw = ow;
  }
  if (oh !== h) { // vertical pass
    const { bounds, weights } = coefficients(h, oh);
    const out = new Uint8Array(sw * oh);
    for (let y = 0; y < oh; y++) {
      const k = weights[y];
      for (let x = 0; x < sw; x++) {
        let acc = 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < k.length; i++) acc += src[(bounds[y] + i) * sw + x] * k[i];
        out[y * sw + x] = clip8(acc);
      }
    }
    src = out;
  }
  return src;
}

// ---------------------------------------------------------------- the stored preprocessing
// Python's round(): half to even
function pyRound(v) {
  const f = Math.floor(v);
  const diff = v - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function contentBox(prep, w, h) {
  if (prep.fit === 'stretch') return [0, 0, prep.width, prep.height];
  const scale = Math.min(prep.width / w, prep.height / h);
  const cw = Math.min(prep.width, Math.max(1, pyRound(w * scale)));
  const ch = Math.min(prep.height, Math.max(1, pyRound(h * scale)));
  return [Math.floor((prep.width - cw) / 2), Math.floor((prep.height - ch) / 2), cw, ch];
}

// The decoded frame's planes in `mode`, with JPEG draft scaling as Pillow does it.
function decoded(img, mode, prep) {
  let planes = toMode(img, mode);
  let w = img.width;
  let h = img.height;
  if (img.jpeg) {
    const s = draftScale(w, h, Math.max(prep.width, prep.height));
    if (s > 1) {
      planes = planes.map((p) => blockReduce(p, w, h, s));
      w = Math.ceil(w / s);
      h = Math.ceil(h / s);
    }
  }
  return { planes, w, h };
}

function preprocess(file, prep, img = decode(file)) {
  const { planes, w, h } = decoded(img, prep.mode, prep);
  const [left, top, cw, ch] = contentBox(prep, w, h);
  const size = prep.width * prep.height;
  const x = new Float32Array(planes.length * size);
  planes.forEach((plane, c) => {
    const r = cw === w && ch === h ? plane : resizePlane(plane, w, h, cw, ch);
    x.fill(prep.pad_value / 255, c * size, (c + 1) * size);
    for (let y = 0; y < ch; y++) {
      for (let xx = 0; xx < cw; xx++) {
        x[c * size + (top + y) * prep.width + left + xx] = r[y * cw + xx] / 255;
      }
    }
  });
  return x;
}

// ---------------------------------------------------------------- frame checks
// densestudio/runtime/frame_checks.py: statistics of the decoded frame in grey levels, long
// side resized to at most work_side; UNSURE (with a reason) when it fits no class's ranges.
const STATS = ['p01', 'p50', 'p99', 'std', 'dark', 'bright', 'sharpness', 'aspect'];
const UNLIKE = 'unlike the training images';
const REASONS = {
  'p50 low': 'too dark', 'dark high': 'too dark', 'p50 high': 'overexposed',
  'bright high': 'overexposed',
  'sharpness low': 'out of focus', 'std low': 'flat',
};
const PRIORITY = ['too dark', 'overexposed', 'out of focus', 'flat', UNLIKE];

function frameStats(img, prep, checks) {
  const { planes, w, h } = decoded(img, 'L', prep);
  let grey = planes[0];
  let gw = w;
  let gh = h;
  const scale = checks.work_side / Math.max(w, h);
  if (scale < 1) {
    gw = Math.max(1, pyRound(w * scale));
    gh = Math.max(1, pyRound(h * scale));
    grey = resizePlane(grey, w, h, gw, gh);
  }
  const n = gw * gh;
  const sorted = Float64Array.from(grey).sort();
  const pct = (q) => sorted[Math.floor(q * (n - 1))];
  let sum = 0;
  let dark = 0;
  let bright = 0;
  for (let i = 0; i < n; i++) {
    sum += grey[i];
    if (grey[i] <= checks.levels.dark) dark++;
    if (grey[i] >= checks.levels.bright) bright++;
  }
  const mean = sum / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (grey[i] - mean) ** 2;
  const std = Math.sqrt(ss / n);
  let sharpness = 0;
  if (gw >= 3 && gh >= 3 && std > 0) {
    const lap = [];
    for (let y = 1; y < gh - 1; y++) {
      for (let x = 1; x < gw - 1; x++) {
        const i = y * gw + x;
        lap.push(4 * grey[i] - grey[i - gw] - grey[i + gw] - grey[i - 1] - grey[i + 1]);
      }
    }
    const lm = lap.reduce((a, b) => a + b, 0) / lap.length;
    sharpness = lap.reduce((a, b) => a + (b - lm) ** 2, 0) / lap.length / (std * std);
  }
  return {
    p01: pct(0.01), p50: pct(0.5), p99: pct(0.99), std, dark: dark / n, bright: bright / n,
    sharpness, aspect: Math.log2(Math.max(1, w) / Math.max(1, h)),
  };
}

function outside(box, stats, flatStd) {
  const found = [];
  for (const key of STATS) {
    if (!box[key]) continue;
    const [lo, hi] = box[key];
    // a flat frame is flat, not out of focus (noise alone is sharp)
    if (stats[key] < lo && key === 'sharpness' && stats.std < flatStd) continue;
    if (stats[key] < lo) found.push(key + ' low');
    else if (stats[key] > hi) found.push(key + ' high');
  }
  return found;
}

// Null when the frame fits one class's ranges; else the named reason of the statistics
// outside the ranges over all training frames, else of those outside the nearest class's,
// else "unlike the training images".
function frameReason(checks, stats) {
  const byClass = Object.values(checks.by_class || {});
  const boxes = byClass.length ? byClass : [checks.ranges];
  const flatStd = checks.levels.flat_std;
  let nearest = null;
  for (const box of boxes) {
    const found = outside(box, stats, flatStd);
    if (found.length === 0) return null;
    if (nearest === null || found.length < nearest.length) nearest = found;
  }
  for (const found of [outside(checks.ranges, stats, flatStd), nearest]) {
    const named = new Set(found.filter((v) => v in REASONS).map((v) => REASONS[v]));
    const first = PRIORITY.find((r) => named.has(r));
    // a flat black frame is too dark, a flat white one overexposed
    if (first === 'flat' && stats.p50 <= checks.levels.flat_dark) return 'too dark';
    if (first === 'flat' && stats.p50 >= checks.levels.flat_bright) return 'overexposed';
    if (first) return first;
  }
  return UNLIKE;
}

// ---------------------------------------------------------------- decision
function decide(meta, probs, unfamiliar) {
  if (unfamiliar) return 'UNSURE';
  const op = meta.operating_point;
  if (!op) return null;
  const p = probs[meta.class_names.indexOf(op.good_class)];
  if (op.unsure_low !== null && op.unsure_high !== null && op.unsure_low <= p && p < op.unsure_high) {
    return 'UNSURE';
  }
  return p >= op.threshold ? 'OK' : 'NG';
}

async function main() {
  const [modelPath, ...images] = process.argv.slice(2);
  if (!modelPath || images.length === 0) {
    console.error('usage: node index.js model.onnx IMAGE...');
    process.exit(2);
  }
  const bytes = fs.readFileSync(modelPath);
  const meta = readMetadata(bytes);
  const prep = meta.preprocessing;
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all' });
  const k = meta.class_names.length;
  for (const file of images) {
    const img = decode(file);
    const x = preprocess(file, prep, img);
    const frame = meta.frame_checks ? frameReason(meta.frame_checks, frameStats(img, prep, meta.frame_checks)) : null;
    const shape = [1, prep.mode === 'L' ? 1 : 3, prep.height, prep.width];
    const out = await session.run({ image: new ort.Tensor('float32', x, shape) });
    const probs = Array.from(out.probabilities.data).slice(0, k);
    const best = probs.indexOf(Math.max(...probs));
    const score = out.ood_score ? out.ood_score.data[0] : null;
    const unlike = score !== null && meta.ood ? score > meta.ood.threshold : false;
    const reason = frame || (unlike ? UNLIKE : null);
    console.log(JSON.stringify({
      path: path.resolve(file), class: meta.class_names[best], confidence: probs[best], probs,
      ood_score: score, unfamiliar: reason !== null, reason,
      decision: decide(meta, probs, reason !== null),
    }));
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error('error: ' + err.message);
    process.exit(2);
  });
}

module.exports = { readMetadata, decode, preprocess, frameStats, frameReason, decide };
