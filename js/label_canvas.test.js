// Pure logic of the labeling canvas: node --test js/
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  UndoStack,
  applyWindow,
  autoWindow,
  windowChoices,
  colorTable,
  safeColor,
  FALLBACK_COLOR,
  decodeMask,
  encodeMask,
  fitView,
  floodFill,
  fullWindow,
  imageValues,
  preserveRule,
  stamp,
  strokeSegment,
  toImage,
  zoomAt,
  pixelOf,
  voxelOf,
  prefetchOrder,
  SliceCache,
  noPrompts,
  promptCounts,
  placeRegion,
  paintProposal,
  acceptProposal,
} from "../patientml_widgets/static/label_canvas.js";

const count = (map, value) => map.reduce((n, v) => n + (v === value ? 1 : 0), 0);

test("a size-1 stamp paints exactly one pixel", () => {
  const map = new Uint8Array(10 * 10);
  stamp(map, 10, 10, 3.7, 4.2, 1, 2);
  assert.equal(count(map, 2), 1);
  assert.equal(map[4 * 10 + 3], 2);
});

test("a disc stamp is round, symmetric and clipped at the edges", () => {
  const map = new Uint8Array(21 * 21);
  stamp(map, 21, 21, 10.5, 10.5, 9, 1);
  const n = count(map, 1);
  assert.ok(Math.abs(n - Math.PI * 4.5 * 4.5) < 12, `disc area ${n}`);
  for (let y = 0; y < 21; y++) for (let x = 0; x < 21; x++) assert.equal(map[y * 21 + x], map[y * 21 + (20 - x)]);
  const edge = new Uint8Array(8 * 8);
  const box = stamp(edge, 8, 8, 0, 0, 6, 1);
  assert.deepEqual(box, { x0: 0, y0: 0, x1: 2, y1: 2 });
});

test("a fast stroke is interpolated: no gaps between pointer events", () => {
  const map = new Uint8Array(100 * 20);
  strokeSegment(map, 100, 20, 2, 10, 95, 10, 2, 1);
  for (let x = 2; x < 95; x++) assert.equal(map[10 * 100 + x], 1, `gap at x=${x}`);
  const diagonal = new Uint8Array(64 * 64);
  strokeSegment(diagonal, 64, 64, 1, 1, 62, 62, 1, 1);
  for (let i = 2; i < 62; i++) assert.equal(diagonal[i * 64 + i], 1, `gap at ${i}`);
});

test("preserve other labels: the marker paints background or its class, the eraser only its class", () => {
  const map = Uint8Array.from([0, 1, 2, 3]);
  strokeSegment(map, 4, 1, 0.5, 0.5, 3.5, 0.5, 1, 2, preserveRule(true, 2, 2));
  assert.deepEqual([...map], [2, 1, 2, 3]);
  strokeSegment(map, 4, 1, 0.5, 0.5, 3.5, 0.5, 1, 0, preserveRule(true, 0, 2));
  assert.deepEqual([...map], [0, 1, 0, 3]);
  assert.equal(preserveRule(false, 1, 1), null);
});

test("flood fill fills the connected region only", () => {
  const w = 9;
  const map = new Uint8Array(w * w);
  for (let i = 2; i <= 6; i++) map[2 * w + i] = map[6 * w + i] = map[i * w + 2] = map[i * w + 6] = 1; // a ring
  const box = floodFill(map, w, w, 4, 4, 2);
  assert.deepEqual(box, { x0: 3, y0: 3, x1: 5, y1: 5 });
  assert.equal(count(map, 2), 9);
  assert.equal(floodFill(map, w, w, 4, 4, 2), null); // same value: nothing to do
  floodFill(map, w, w, 0, 0, 3);
  assert.equal(count(map, 3), w * w - 9 - 16);
  assert.equal(floodFill(map, w, w, -1, 0, 3), null);
});

test("undo and redo restore exact bytes, keep 200 steps, and a new edit clears redo", () => {
  const w = 16;
  const map = new Uint8Array(w * w);
  const history = new UndoStack(200);
  const snapshots = [map.slice()];
  for (let i = 0; i < 150; i++) {
    const before = map.slice();
    const box = strokeSegment(map, w, w, i % 16, 0, (i * 7) % 16, 15, 3, (i % 3) + 1);
    history.record(before, map, w, box);
    snapshots.push(map.slice());
  }
  for (let i = 149; i >= 0; i--) {
    history.undo(map, w);
    assert.deepEqual(map, snapshots[i]);
  }
  assert.equal(history.undo(map, w), null);
  history.redo(map, w);
  assert.deepEqual(map, snapshots[1]);
  const before = map.slice();
  map[0] = 9;
  history.record(before, map, w, { x0: 0, y0: 0, x1: 0, y1: 0 });
  assert.equal(history.canRedo, false);
  assert.equal(history.record(map.slice(), map, w, { x0: 0, y0: 0, x1: 3, y1: 3 }), false); // no change, no step
});

test("mask codec: identical to the Python codec on shared vectors", async () => {
  const vectors = JSON.parse(readFileSync(new URL("./fixtures/mask_vectors.json", import.meta.url), "utf8"));
  for (const v of vectors) {
    const raw = new Uint8Array(Buffer.from(v.raw, "base64"));
    for (const wire of [v.python_wire, v.js_wire]) {
      const decoded = await decodeMask(new Uint8Array(Buffer.from(wire, "base64")));
      assert.equal(decoded.height, v.height);
      assert.equal(decoded.width, v.width);
      assert.deepEqual(decoded.map, raw, v.name);
    }
    const again = await decodeMask(await encodeMask(raw, v.height, v.width));
    assert.deepEqual(again.map, raw);
  }
});

test("mask codec refuses bad headers and wrong sizes", async () => {
  await assert.rejects(decodeMask(new Uint8Array([1, 2, 3])), /wire format/);
  const wire = await encodeMask(new Uint8Array(6), 2, 3);
  new DataView(wire.buffer).setUint32(4, 5, true);
  await assert.rejects(decodeMask(wire), /not 5 x 3/);
  await assert.rejects(encodeMask(new Uint8Array(5), 2, 3), /not 2 x 3/);
});

test("window / level maps the window onto 0..255 from the original values", () => {
  const values = Uint16Array.from([1000, 1500, 2000, 4000]);
  const out = new Uint8ClampedArray(16);
  applyWindow(values, 1, 1500, 1000, out);
  assert.deepEqual([out[0], out[4], out[8], out[12]], [0, 128, 255, 255]);
  assert.deepEqual([out[1], out[2], out[3]], [0, 0, 255]);
  const ct = Int16Array.from([-1000, -600, 40, 1000]);
  applyWindow(ct, 1, 40, 400, out); // soft tissue: 40 HU is mid-grey
  assert.deepEqual([out[0], out[4], out[12]], [0, 0, 255]);
  assert.ok(Math.abs(out[8] - 127.5) <= 0.5);
  assert.deepEqual(fullWindow(values), { center: 2500, width: 3000 });
  const ramp = Float32Array.from({ length: 1001 }, (_, i) => i);
  const auto = autoWindow(ramp);
  assert.ok(Math.abs(auto.center - 500) < 2 && Math.abs(auto.width - 980) < 3, JSON.stringify(auto));
  const rgb = Uint8Array.from([10, 20, 30]);
  applyWindow(rgb, 3, 127.5, 255, out.subarray(0, 4));
  assert.deepEqual([out[0], out[1], out[2], out[3]], [10, 20, 30, 255]);
});

test("MONOCHROME1 images invert: low values bright", () => {
  const values = Uint16Array.from([1000, 1500, 2000]);
  const out = new Uint8ClampedArray(12);
  applyWindow(values, 1, 1500, 1000, out, true);
  assert.deepEqual([out[0], out[4], out[8]], [255, 128, 0]);
});

test("window menu: header and modality presets from Python, the example's window selected", () => {
  const ct = Int16Array.from([-1000, 0, 40, 1000]);
  const presets = [
    { name: "From the image", center: 40, width: 400 },
    { name: "CT lung", center: -600, width: 1500 },
  ];
  let { options, selected } = windowChoices("int16", ct, 1, { center: 40, width: 400 }, presets);
  assert.deepEqual(Object.keys(options), ["Auto", "Full range", "From the image", "CT lung"]);
  assert.equal(selected, "From the image");
  ({ options, selected } = windowChoices("int16", ct, 1, { center: 7, width: 9 }, presets));
  assert.equal(selected, "Custom");
  assert.deepEqual(options.Custom, { center: 7, width: 9 });
  ({ options, selected } = windowChoices("uint8", Uint8Array.from([0, 255]), 1, {}, []));
  assert.deepEqual(Object.keys(options), ["Auto", "Full range"]);
  assert.equal(selected, "Full range");
  assert.equal(windowChoices("uint16", Uint16Array.from([5, 9]), 1, null, []).selected, "Auto");
});

test("16-bit image bytes stay 16-bit", () => {
  const bytes = new Uint8Array(Uint16Array.from([0, 1, 65535]).buffer);
  assert.deepEqual([...imageValues(bytes, "uint16")], [0, 1, 65535]);
  assert.deepEqual([...imageValues(new Uint8Array(Int16Array.from([-1024, 3071]).buffer), "int16")], [-1024, 3071]);
  assert.throws(() => imageValues(bytes, "complex64"), /unsupported/);
});

test("colour table: background transparent, class colours with the overlay's opacity", () => {
  const table = colorTable([{ index: 0, color: "#000000" }, { index: 3, color: "#ff8000" }], 0.5);
  assert.equal(table[0], 0);
  const word = table[3];
  assert.deepEqual([word & 255, (word >> 8) & 255, (word >> 16) & 255, word >>> 24], [255, 128, 0, 128]);
});

test("view: zoom keeps the point under the cursor, fit centres the image", () => {
  const view = { scale: 2, tx: 10, ty: -5 };
  const before = toImage(view, 123, 77);
  const zoomed = zoomAt(view, 1.5, 123, 77);
  const after = toImage(zoomed, 123, 77);
  assert.ok(Math.abs(before.x - after.x) < 1e-9 && Math.abs(before.y - after.y) < 1e-9);
  assert.equal(zoomAt(view, 1e6, 0, 0).scale, 64);
  const fit = fitView(200, 100, 400, 400);
  assert.deepEqual(fit, { scale: 2, tx: 0, ty: 100 });
});

test("only #rrggbb colours pass; anything else becomes the fallback grey", () => {
  assert.equal(safeColor("#1A73e8"), "#1A73e8");
  for (const bad of ["red", "#fff", "#1a73e8;background:url(javascript:alert(1))", 'x" onerror="alert(1)', " #1a73e8", null, 12, {}]) {
    assert.equal(safeColor(bad), FALLBACK_COLOR);
  }
  const table = colorTable([{ index: 1, color: "expression(alert(1))" }], 1);
  assert.equal(table[1] & 0xffffff, 0x808080);
});

// the layouts patientml_widgets.imaging.planes gives an axial CT of shape (30, 40, 50)
const AXIAL_CT = {
  axial: { axis: 0, rows: 1, cols: 2, flip_rows: false, flip_cols: false, depth: 30, height: 40, width: 50 },
  coronal: { axis: 1, rows: 0, cols: 2, flip_rows: true, flip_cols: false, depth: 40, height: 30, width: 50 },
  sagittal: { axis: 2, rows: 0, cols: 1, flip_rows: true, flip_cols: false, depth: 50, height: 30, width: 40 },
};

test("volumes: a voxel's pixel in each plane and back (the crosshair links the planes)", () => {
  const at = [7, 11, 23];
  assert.deepEqual(pixelOf(AXIAL_CT.axial, at), { index: 7, x: 23, y: 11 });
  assert.deepEqual(pixelOf(AXIAL_CT.coronal, at), { index: 11, x: 23, y: 30 - 1 - 7 }); // superior at the top
  assert.deepEqual(pixelOf(AXIAL_CT.sagittal, at), { index: 23, x: 11, y: 22 });
  for (const plane of Object.values(AXIAL_CT)) {
    const { index, x, y } = pixelOf(plane, at);
    assert.deepEqual(voxelOf(plane, index, x, y), at);
  }
  const flipped = { ...AXIAL_CT.axial, flip_cols: true };
  assert.deepEqual(voxelOf(flipped, 3, 0, 0), [3, 0, 49]);
});

test("volumes: prefetch the nearest slices first, inside the volume", () => {
  assert.deepEqual(prefetchOrder(5, 10), [6, 4, 7, 3, 8, 2]);
  assert.deepEqual(prefetchOrder(0, 3), [1, 2]);
  assert.deepEqual(prefetchOrder(9, 10, 2), [8, 7]);
});

test("volumes: the slice cache keeps at most its bytes, least recently used out first", () => {
  const slice = (n) => ({ values: new Uint8Array(n), meta: {}, label: new Uint8Array(n), prediction: null });
  const cache = new SliceCache(100);
  cache.set("axial:0", slice(20));
  cache.set("axial:1", slice(20));
  cache.get("axial:0"); // used: axial:1 is now the oldest
  cache.set("axial:2", slice(20));
  assert.equal(cache.bytes, 80); // three slices of 40 bytes over a limit of 100: one went
  assert.ok(cache.get("axial:0") && cache.get("axial:2") && !cache.entries.has("axial:1"));
  cache.set("coronal:4", slice(10));
  cache.dropLabels("axial"); // an edit in the axial plane: the other planes' labels are out of date
  assert.ok(cache.get("axial:0").label && cache.get("coronal:4").label === null && cache.get("coronal:4").values);
  cache.dropLabels();
  assert.equal(cache.get("axial:2").label, null);
  assert.equal(cache.bytes, 20 + 20 + 10);
});

test("smart tool: a proposal's region goes back into a full mask; a bad region gives an empty one", () => {
  const { mask, box } = placeRegion(5, 4, [1, 2, 3, 2], new Uint8Array([1, 0, 1, 1, 1, 0]));
  assert.deepEqual(box, { x0: 1, y0: 2, x1: 3, y1: 3 });
  assert.deepEqual([...mask], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0]);
  for (const [region, patch] of [[[4, 3, 2, 2], new Uint8Array(4)], [[0, 0, 2, 2], new Uint8Array(3)], [null, null], [[-1, 0, 1, 1], new Uint8Array(1)]]) {
    const out = placeRegion(5, 4, region, patch);
    assert.equal(out.box, null);
    assert.equal(out.mask.reduce((a, b) => a + b, 0), 0);
  }
});

test("smart tool: the proposal layer is a tint inside and an opaque outline on the edge", () => {
  const W = 5, H = 5;
  const mask = new Uint8Array(W * H);
  for (let y = 1; y <= 3; y++) for (let x = 1; x <= 3; x++) mask[y * W + x] = 1;
  const px = new Uint32Array(W * H).fill(7);
  paintProposal(mask, W, H, "#ff0000", px);
  const alpha = (i) => px[i] >>> 24;
  assert.equal(alpha(0), 0); // outside: transparent (the old content is cleared)
  assert.equal(alpha(2 * W + 2), 90); // inside: the tint
  assert.equal(alpha(1 * W + 2), 255); // on the edge: the outline
  assert.equal(px[2 * W + 2] & 0xff, 255); // red, little-endian RGBA
  const edgeMask = new Uint8Array(W * H).fill(1); // touching the image border: the border is an edge
  paintProposal(edgeMask, W, H, "not a colour", px);
  assert.equal(alpha(0), 255);
  assert.equal(alpha(2 * W + 2), 90);
  assert.equal(px[0] & 0xffffff, 0x808080); // an unsafe colour reads as the fallback grey
});

test("smart tool: accepting paints the class where the proposal is, under the preserve rule", () => {
  const W = 4;
  const map = new Uint8Array([0, 2, 0, 0, 0, 2, 1, 0]);
  const { mask, box } = placeRegion(W, 2, [0, 0, 3, 2], new Uint8Array([1, 1, 1, 1, 1, 0]));
  const proposal = { mask, box, key: "" };
  const keep = preserveRule(true, 1, 1); // paint only background or this class
  const changed = acceptProposal(map, W, proposal, 1, keep);
  assert.deepEqual([...map], [1, 2, 1, 0, 1, 2, 1, 0]);
  assert.deepEqual(changed, { x0: 0, y0: 0, x1: 2, y1: 1 });
  assert.equal(acceptProposal(map, W, proposal, 1, keep), null); // nothing more to change
  assert.equal(acceptProposal(map, W, { mask, box: null, key: "" }, 1), null); // an empty proposal
  acceptProposal(map, W, proposal, 3); // without the rule: every proposed pixel
  assert.deepEqual([...map], [3, 3, 3, 0, 3, 3, 1, 0]);
});

test("smart tool: prompts are counted for the label's record", () => {
  const p = noPrompts();
  assert.deepEqual(promptCounts(p), { positive: 0, negative: 0, box: 0, scribbles: 0 });
  p.points.push([1, 2, true], [3, 4, false], [5, 6, true]);
  p.box = [0, 0, 3, 3];
  p.scribbles.push({ positive: false, points: [[0, 0], [1, 1]], width: 3 });
  assert.deepEqual(promptCounts(p), { positive: 2, negative: 1, box: 1, scribbles: 1 });
});
