// LabelCanvas: the labeling view (anywidget front end), self-contained.
//
// The label map is a Uint8Array of class indices: the truth while drawing. Overlays are
// drawn from it through a colour table; classes are never read back from pixels. At each
// stroke end the map goes to Python compressed (zlib, the "PMLM" wire format that
// patientml_widgets.imaging.masks decodes). Pure logic is exported by name and tested
// by js/label_canvas.test.js (`node --test js/`); render() only touches the DOM.
// @ts-check

/**
 * The LabelCanvas traits (patientml_widgets/widgets/label_canvas.py).
 * @typedef Model
 * @prop {"segmentation" | "classification"} mode
 * @prop {ClassInfo[]} classes
 * @prop {boolean} multi_label
 * @prop {number[]} value classification: the chosen class indices
 * @prop {Tool} tool
 * @prop {number} brush_size
 * @prop {number} active_class
 * @prop {number} opacity
 * @prop {boolean} show_prediction
 * @prop {boolean} preserve_labels
 * @prop {Partial<Window>} window in the image's own values ({} = automatic)
 * @prop {WindowPreset[]} window_presets offered besides Auto and Full range
 * @prop {boolean} invert show low values bright (DICOM MONOCHROME1)
 * @prop {Record<string, number>} prediction_scores classification: probability per class index
 * @prop {string} status
 * @prop {string} error
 * @prop {boolean} busy
 * @prop {boolean} bound
 * @prop {DataView} _image zlib of the image's little-endian bytes
 * @prop {{ width: number, height: number, channels: number, dtype: string }} _image_meta
 */

/** @typedef {"brush" | "eraser" | "fill" | "pan" | "window"} Tool */
/** @typedef {{ index: number, name: string, color: string, description?: string }} ClassInfo */
/** @typedef {{ center: number, width: number }} Window */
/** @typedef {{ name: string, center: number, width: number }} WindowPreset */
/** @typedef {{ x0: number, y0: number, x1: number, y1: number }} Box inclusive pixel bounds */
/** @typedef {(old: number) => boolean} Allow may a stroke overwrite a pixel of this value? */
/** @typedef {{ scale: number, tx: number, ty: number }} View screen = image * scale + (tx, ty) */
/** @typedef {{ x: number, y: number }} Point */
/** @typedef {Uint8Array | Uint16Array | Int16Array | Float32Array} ImageValues */

// ---------------------------------------------------------------------------------------
// Mask wire codec: "PMLM", height and width as little-endian uint32, zlib of H*W bytes.

const MAGIC = [0x50, 0x4d, 0x4c, 0x4d];

/**
 * @param {Uint8Array} bytes
 * @param {CompressionStream | DecompressionStream} stream
 * @returns {Promise<Uint8Array>}
 */
async function pipe(bytes, stream) {
  const out = await new Response(new Blob([/** @type {BlobPart} */ (bytes)]).stream().pipeThrough(stream)).arrayBuffer();
  return new Uint8Array(out);
}

/**
 * zlib-compress bytes (the browser's CompressionStream("deflate") writes the zlib format).
 * @param {Uint8Array} bytes
 * @returns {Promise<Uint8Array>}
 */
export function deflate(bytes) {
  return pipe(bytes, new CompressionStream("deflate"));
}

/**
 * zlib-decompress bytes.
 * @param {Uint8Array} bytes
 * @returns {Promise<Uint8Array>}
 */
export function inflate(bytes) {
  return pipe(bytes, new DecompressionStream("deflate"));
}

/**
 * Encode a label map (row-major class indices) in the wire format.
 * @param {Uint8Array} map
 * @param {number} height
 * @param {number} width
 * @returns {Promise<Uint8Array>}
 */
export async function encodeMask(map, height, width) {
  if (map.length !== height * width) throw new Error(`mask holds ${map.length} bytes, not ${height} x ${width}`);
  const body = await deflate(map);
  const out = new Uint8Array(12 + body.length);
  out.set(MAGIC, 0);
  const view = new DataView(out.buffer);
  view.setUint32(4, height, true);
  view.setUint32(8, width, true);
  out.set(body, 12);
  return out;
}

/**
 * Decode the wire format; throws on a bad header or a payload of the wrong size.
 * @param {Uint8Array | DataView} bytes
 * @returns {Promise<{ height: number, width: number, map: Uint8Array }>}
 */
export async function decodeMask(bytes) {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (data.length < 12 || MAGIC.some((b, i) => data[i] !== b)) throw new Error("not a mask in the wire format");
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const height = view.getUint32(4, true);
  const width = view.getUint32(8, true);
  const map = await inflate(data.subarray(12));
  if (map.length !== height * width) throw new Error(`mask payload is not ${height} x ${width}`);
  return { height, width, map };
}

// ---------------------------------------------------------------------------------------
// Painting: discs stamped along a segment, flood fill, undo patches.

/**
 * An empty bounding box; grow it with `growBox`.
 * @returns {Box}
 */
export function emptyBox() {
  return { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
}

/**
 * Grow `box` (in place) to cover `other`.
 * @param {Box} box
 * @param {Box | null | undefined} other
 * @returns {Box} `box`
 */
export function growBox(box, other) {
  if (!other) return box;
  box.x0 = Math.min(box.x0, other.x0);
  box.y0 = Math.min(box.y0, other.y0);
  box.x1 = Math.max(box.x1, other.x1);
  box.y1 = Math.max(box.y1, other.y1);
  return box;
}

/**
 * @param {Box} box
 * @returns {boolean}
 */
export function boxIsEmpty(box) {
  return !(box.x1 >= box.x0 && box.y1 >= box.y0);
}

/**
 * Paint a disc of diameter `size` centred at image coordinates (cx, cy): every pixel whose
 * centre lies within the disc (size 1 is exactly one pixel). `allow(old)` may veto a pixel
 * ("preserve other labels"). Returns the box of pixels considered, or null.
 * @param {Uint8Array} map
 * @param {number} width
 * @param {number} height
 * @param {number} cx
 * @param {number} cy
 * @param {number} size
 * @param {number} value
 * @param {Allow | null} [allow]
 * @returns {Box | null}
 */
export function stamp(map, width, height, cx, cy, size, value, allow = null) {
  if (size <= 1) {
    const x = Math.floor(cx);
    const y = Math.floor(cy);
    if (x < 0 || y < 0 || x >= width || y >= height) return null;
    if (allow === null || allow(map[y * width + x])) map[y * width + x] = value;
    return { x0: x, y0: y, x1: x, y1: y };
  }
  const r = size / 2;
  const x0 = Math.max(0, Math.floor(cx - r));
  const x1 = Math.min(width - 1, Math.ceil(cx + r) - 1);
  const y0 = Math.max(0, Math.floor(cy - r));
  const y1 = Math.min(height - 1, Math.ceil(cy + r) - 1);
  if (x0 > x1 || y0 > y1) return null;
  const r2 = r * r;
  for (let y = y0; y <= y1; y++) {
    const dy = y + 0.5 - cy;
    const row = y * width;
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - cx;
      if (dx * dx + dy * dy > r2) continue;
      const i = row + x;
      if (allow === null || allow(map[i])) map[i] = value;
    }
  }
  return { x0, y0, x1, y1 };
}

/**
 * Stamp discs from (x0, y0) to (x1, y1) spaced at most a quarter of the diameter apart
 * (and at most one pixel), so a fast stroke leaves no gaps. Returns the changed box.
 * @param {Uint8Array} map
 * @param {number} width
 * @param {number} height
 * @param {number} x0
 * @param {number} y0
 * @param {number} x1
 * @param {number} y1
 * @param {number} size
 * @param {number} value
 * @param {Allow | null} [allow]
 * @returns {Box | null}
 */
export function strokeSegment(map, width, height, x0, y0, x1, y1, size, value, allow = null) {
  const box = emptyBox();
  const length = Math.hypot(x1 - x0, y1 - y0);
  const spacing = Math.max(0.5, Math.min(1, size / 4));
  const steps = Math.max(1, Math.ceil(length / spacing));
  for (let s = 0; s <= steps; s++) {
    const t = s / steps;
    growBox(box, stamp(map, width, height, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, size, value, allow));
  }
  return boxIsEmpty(box) ? null : box;
}

/**
 * The veto for "preserve other labels": the brush paints only background or its own class,
 * the eraser removes only the active class.
 * @param {boolean} preserve
 * @param {number} value
 * @param {number} activeClass
 * @returns {Allow | null}
 */
export function preserveRule(preserve, value, activeClass) {
  if (!preserve) return null;
  if (value === 0) return (old) => old === activeClass;
  return (old) => old === 0 || old === value;
}

/**
 * Fill the 4-connected region of equal value around (x, y) with `value`; returns its box or null.
 * @param {Uint8Array} map
 * @param {number} width
 * @param {number} height
 * @param {number} x
 * @param {number} y
 * @param {number} value
 * @returns {Box | null}
 */
export function floodFill(map, width, height, x, y, value) {
  x = Math.floor(x);
  y = Math.floor(y);
  if (x < 0 || y < 0 || x >= width || y >= height) return null;
  const target = map[y * width + x];
  if (target === value) return null;
  const box = emptyBox();
  const stack = [x, y];
  while (stack.length) {
    const sy = /** @type {number} */ (stack.pop());
    const sx = /** @type {number} */ (stack.pop());
    let left = sx;
    const row = sy * width;
    if (map[row + left] !== target) continue;
    while (left > 0 && map[row + left - 1] === target) left--;
    let right = sx;
    while (right < width - 1 && map[row + right + 1] === target) right++;
    map.fill(value, row + left, row + right + 1);
    growBox(box, { x0: left, y0: sy, x1: right, y1: sy });
    for (const ny of [sy - 1, sy + 1]) {
      if (ny < 0 || ny >= height) continue;
      const nrow = ny * width;
      let inRun = false;
      for (let nx = left; nx <= right; nx++) {
        const hit = map[nrow + nx] === target;
        if (hit && !inRun) stack.push(nx, ny);
        inRun = hit;
      }
    }
  }
  return box;
}

/**
 * Copy a box out of a map.
 * @param {Uint8Array} map
 * @param {number} width
 * @param {Box} box
 * @returns {Uint8Array}
 */
export function copyBox(map, width, box) {
  const w = box.x1 - box.x0 + 1;
  const h = box.y1 - box.y0 + 1;
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) out.set(map.subarray((box.y0 + y) * width + box.x0, (box.y0 + y) * width + box.x0 + w), y * w);
  return out;
}

/**
 * Paste a copy made by copyBox back.
 * @param {Uint8Array} map
 * @param {number} width
 * @param {Box} box
 * @param {Uint8Array} data
 */
export function pasteBox(map, width, box, data) {
  const w = box.x1 - box.x0 + 1;
  for (let y = 0; y * w < data.length; y++) map.set(data.subarray(y * w, (y + 1) * w), (box.y0 + y) * width + box.x0);
}

/** @typedef {{ box: Box, before: Uint8Array, after: Uint8Array }} Edit */

/** Undo / redo of edits, each kept as the before and after bytes of the box it changed. */
export class UndoStack {
  /** @param {number} [limit] the most edits kept */
  constructor(limit = 200) {
    this.limit = limit;
    /** @type {Edit[]} */
    this.done = [];
    /** @type {Edit[]} */
    this.undone = [];
  }

  /**
   * Record an edit: `before` is the whole map as it was, `map` as it is now.
   * @param {Uint8Array} before
   * @param {Uint8Array} map
   * @param {number} width
   * @param {Box | null} box
   * @returns {boolean} whether anything changed (and was recorded)
   */
  record(before, map, width, box) {
    if (!box || boxIsEmpty(box)) return false;
    const old = copyBox(before, width, box);
    const now = copyBox(map, width, box);
    if (old.every((v, i) => v === now[i])) return false;
    this.done.push({ box: { ...box }, before: old, after: now });
    if (this.done.length > this.limit) this.done.shift();
    this.undone = [];
    return true;
  }

  get canUndo() {
    return this.done.length > 0;
  }

  get canRedo() {
    return this.undone.length > 0;
  }

  /**
   * Undo the last edit on `map`; returns the changed box or null.
   * @param {Uint8Array} map
   * @param {number} width
   * @returns {Box | null}
   */
  undo(map, width) {
    const edit = this.done.pop();
    if (!edit) return null;
    pasteBox(map, width, edit.box, edit.before);
    this.undone.push(edit);
    return edit.box;
  }

  /**
   * Redo the last undone edit on `map`; returns the changed box or null.
   * @param {Uint8Array} map
   * @param {number} width
   * @returns {Box | null}
   */
  redo(map, width) {
    const edit = this.undone.pop();
    if (!edit) return null;
    pasteBox(map, width, edit.box, edit.after);
    this.done.push(edit);
    return edit.box;
  }
}

// ---------------------------------------------------------------------------------------
// Display: window/level on the original values, colour tables, the view transform.

/**
 * The window spanning the 1st to 99th percentile of a sample of the values.
 * @param {ArrayLike<number>} values
 * @param {number} [channels]
 * @returns {Window}
 */
export function autoWindow(values, channels = 1) {
  const step = Math.max(1, Math.floor(values.length / channels / 65536));
  /** @type {number[]} */
  const sample = [];
  for (let i = 0; i < values.length; i += step * channels) sample.push(values[i]);
  sample.sort((a, b) => a - b);
  const lo = sample[Math.floor(0.01 * (sample.length - 1))];
  const hi = sample[Math.ceil(0.99 * (sample.length - 1))];
  const width = Math.max(hi - lo, 1e-6);
  return { center: lo + width / 2, width };
}

/**
 * The window spanning all values.
 * @param {ArrayLike<number>} values
 * @returns {Window}
 */
export function fullWindow(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const width = Math.max(hi - lo, 1e-6);
  return { center: lo + width / 2, width };
}

/**
 * Map original values through a window to 8-bit RGBA (`out`: Uint8ClampedArray of w*h*4).
 * Gray images (channels 1) go to all three colour channels; `invert` shows MONOCHROME1
 * images (low values bright) the right way round.
 * @param {ArrayLike<number>} values
 * @param {number} channels
 * @param {number} center
 * @param {number} width
 * @param {Uint8ClampedArray} out
 * @param {boolean} [invert]
 * @returns {Uint8ClampedArray} `out`
 */
export function applyWindow(values, channels, center, width, out, invert = false) {
  let lo = center - width / 2;
  let scale = 255 / Math.max(width, 1e-6);
  if (invert) {
    lo = center + Math.max(width, 1e-6) / 2;
    scale = -scale;
  }
  const n = out.length / 4;
  for (let p = 0; p < n; p++) {
    const o = p * 4;
    if (channels === 1) {
      const v = (values[p] - lo) * scale;
      out[o] = out[o + 1] = out[o + 2] = v;
    } else {
      const s = p * channels;
      out[o] = (values[s] - lo) * scale;
      out[o + 1] = (values[s + 1] - lo) * scale;
      out[o + 2] = (values[s + 2] - lo) * scale;
    }
    out[o + 3] = 255;
  }
  return out;
}

/**
 * The window menu: Auto and Full range for every image, then the presets Python sent (the
 * header's windows, then the modality's). The selection is the preset equal to `given`
 * (the example's window), else "Custom" holding `given`, else the image's natural default.
 * @param {string} dtype
 * @param {ArrayLike<number>} values
 * @param {number} channels
 * @param {Partial<Window> | null | undefined} given
 * @param {WindowPreset[] | null | undefined} presets
 * @returns {{ options: Record<string, Window>, selected: string }}
 */
export function windowChoices(dtype, values, channels, given, presets) {
  /** @type {Record<string, Window>} */
  const options = {
    Auto: dtype === "uint8" ? { center: 127.5, width: 255 } : autoWindow(values, channels),
    "Full range": dtype === "uint8" ? { center: 127.5, width: 255 } : fullWindow(values),
  };
  for (const p of presets || []) options[p.name] = { center: p.center, width: p.width };
  let selected = dtype === "uint8" ? "Full range" : "Auto";
  const win = /** @type {Window | null | undefined} */ (given); // {} (automatic) has no width
  if (win && win.width > 0) {
    const match = Object.keys(options).find((k) => options[k].center === win.center && options[k].width === win.width);
    if (match && match !== "Auto") selected = match;
    else {
      options.Custom = { center: win.center, width: win.width };
      selected = "Custom";
    }
  }
  return { options, selected };
}

/**
 * @param {string} hex "#rrggbb"
 * @returns {[number, number, number]}
 */
function parseColor(hex) {
  const n = parseInt(String(hex).replace("#", ""), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/**
 * RGBA words (little-endian, as an ImageData's Uint32 view reads them) per class index.
 * Index 0 (background) is transparent when `transparentZero`.
 * @param {Pick<ClassInfo, "index" | "color">[]} classes
 * @param {number} opacity
 * @param {boolean} [transparentZero]
 * @returns {Uint32Array}
 */
export function colorTable(classes, opacity, transparentZero = true) {
  const table = new Uint32Array(256);
  const alpha = Math.round(Math.max(0, Math.min(1, opacity)) * 255);
  for (const c of classes) {
    if (c.index === 0 && transparentZero) continue;
    const [r, g, b] = parseColor(c.color);
    table[c.index] = ((alpha << 24) | (b << 16) | (g << 8) | r) >>> 0;
  }
  return table;
}

/**
 * Paint the overlay pixels of `box` from the label map through the colour table.
 * @param {Uint8Array} map
 * @param {number} width
 * @param {Uint32Array} table
 * @param {Uint32Array} pixels32
 * @param {Box} box
 */
export function paintOverlay(map, width, table, pixels32, box) {
  for (let y = box.y0; y <= box.y1; y++) {
    const row = y * width;
    for (let x = box.x0; x <= box.x1; x++) pixels32[row + x] = table[map[row + x]];
  }
}

export const MIN_SCALE = 0.05;
export const MAX_SCALE = 64;

/**
 * The view that fits an image into a box, centred.
 * @param {number} imageWidth
 * @param {number} imageHeight
 * @param {number} boxWidth
 * @param {number} boxHeight
 * @returns {View}
 */
export function fitView(imageWidth, imageHeight, boxWidth, boxHeight) {
  const scale = Math.max(MIN_SCALE, Math.min(boxWidth / imageWidth, boxHeight / imageHeight));
  return { scale, tx: (boxWidth - imageWidth * scale) / 2, ty: (boxHeight - imageHeight * scale) / 2 };
}

/**
 * Zoom by `factor` keeping the image point under the screen point (px, py) where it is.
 * @param {View} view
 * @param {number} factor
 * @param {number} px
 * @param {number} py
 * @returns {View}
 */
export function zoomAt(view, factor, px, py) {
  const scale = Math.max(MIN_SCALE, Math.min(MAX_SCALE, view.scale * factor));
  const k = scale / view.scale;
  return { scale, tx: px - (px - view.tx) * k, ty: py - (py - view.ty) * k };
}

/**
 * Screen (viewport) point to image coordinates.
 * @param {View} view
 * @param {number} px
 * @param {number} py
 * @returns {Point}
 */
export function toImage(view, px, py) {
  return { x: (px - view.tx) / view.scale, y: (py - view.ty) / view.scale };
}

/**
 * Typed array of the image values from raw little-endian bytes.
 * @param {Uint8Array} bytes
 * @param {string} dtype "uint8", "uint16", "int16" or "float32"
 * @returns {ImageValues}
 */
export function imageValues(bytes, dtype) {
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  if (dtype === "uint8") return new Uint8Array(buffer);
  if (dtype === "uint16") return new Uint16Array(buffer);
  if (dtype === "int16") return new Int16Array(buffer);
  if (dtype === "float32") return new Float32Array(buffer);
  throw new Error(`unsupported image dtype ${dtype}`);
}

// ---------------------------------------------------------------------------------------
// The widget.

const CSS = `
.pml-lc { font: 13px system-ui, sans-serif; color: #222; outline: none; max-width: 100%; }
.pml-lc:focus-visible { box-shadow: 0 0 0 2px #1a73e8; }
.pml-lc .bar { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; margin-bottom: 4px; }
.pml-lc button { border: 1px solid #c4c4c4; background: #fafafa; border-radius: 4px; padding: 3px 8px; cursor: pointer; font: inherit; }
.pml-lc button[aria-pressed="true"] { background: #dbe8fd; border-color: #1a73e8; }
.pml-lc button:disabled { opacity: .45; cursor: default; }
.pml-lc button.submit { background: #1a73e8; color: #fff; border-color: #1a73e8; }
.pml-lc button.trash, .pml-lc button.delete { color: #c5221f; border-color: #e8a7a5; }
.pml-lc .view { position: relative; overflow: hidden; height: var(--pml-height, 520px); background: #111; border-radius: 4px; touch-action: none; }
.pml-lc .stage { position: absolute; left: 0; top: 0; transform-origin: 0 0; }
.pml-lc .stage canvas { position: absolute; left: 0; top: 0; }
.pml-lc .stage canvas.labels, .pml-lc .stage canvas.prediction { image-rendering: pixelated; }
.pml-lc .stage.pixelated canvas.image { image-rendering: pixelated; }
.pml-lc .cursor { position: absolute; border: 1px solid #fff; box-shadow: 0 0 0 1px #000; border-radius: 50%; pointer-events: none; display: none; }
.pml-lc .palette { display: flex; flex-wrap: wrap; gap: 6px; margin: 6px 0; }
.pml-lc .class { display: flex; align-items: center; gap: 6px; padding: 4px 8px; border: 2px solid transparent; border-radius: 4px; background: #f3f3f3; cursor: pointer; }
.pml-lc .class[aria-pressed="true"] { border-color: #1a73e8; background: #e8f0fe; }
.pml-lc .swatch { width: 16px; height: 16px; border-radius: 3px; border: 1px solid rgba(0,0,0,.3); }
.pml-lc .score { font-size: 11px; color: #555; }
.pml-lc .status { color: #444; min-height: 1.3em; }
.pml-lc .error { color: #c5221f; white-space: pre-wrap; }
.pml-lc label { display: inline-flex; align-items: center; gap: 3px; }
`;

const TRASH_ICON =
  '<svg width="14" height="14" viewBox="0 0 24 24" fill="none" stroke="#c5221f" stroke-width="2" aria-hidden="true">' +
  '<path d="M3 6h18M8 6V4h8v2M6 6l1 14h10l1-14M10 11v6M14 11v6"/></svg>';

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) el.append(c);
  return el;
}

function toUint8(dataView) {
  if (!dataView) return new Uint8Array(0);
  return new Uint8Array(dataView.buffer, dataView.byteOffset, dataView.byteLength);
}

/** Timing hooks for benchmarks and tests (frame times, wire sizes, round trips). */
export const stats = { frames: [], wireBytes: [], roundTrips: [] };

async function render({ model, el }) {
  const style = document.createElement("style");
  style.textContent = CSS;
  const root = h("div", { class: "pml-lc", tabindex: "0", "data-lm-suppress-shortcuts": "true" });
  root.pmlStats = stats; // read by the benchmarks
  el.append(style, root);

  const meta = model.get("_image_meta");
  const W = meta.width;
  const H = meta.height;
  const channels = meta.channels;
  const segmentation = model.get("mode") === "segmentation";
  const values = imageValues(await inflate(toUint8(model.get("_image"))), meta.dtype);
  const map = new Uint8Array(W * H);
  let before = new Uint8Array(W * H);
  let prediction = null;
  const history = new UndoStack(200);
  let view = { scale: 1, tx: 0, ty: 0 };
  let windowState = null; // chosen with the window menu, below
  let seq = 0;
  const pending = new Map();
  const disposers = [];

  // -- DOM ------------------------------------------------------------------------------
  const toolButtons = {};
  const tool = (name, label, title) =>
    (toolButtons[name] = h("button", { title, "aria-pressed": "false", onclick: () => setTool(name) }, label));
  const sizeInput = h("input", { type: "range", min: "1", max: "200", value: String(model.get("brush_size")), title: "Marker size ([ and ])" });
  const sizeLabel = h("span", {}, "");
  const opacityInput = h("input", { type: "range", min: "0", max: "100", value: String(Math.round(model.get("opacity") * 100)), title: "Overlay opacity" });
  const preserveBox = h("input", { type: "checkbox" });
  const predictionBox = h("input", { type: "checkbox" });
  const windowSelect = h("select", { title: "Window / level" });
  const undoButton = h("button", { title: "Undo (Ctrl+Z)", onclick: () => undo() }, "↶ Undo");
  const redoButton = h("button", { title: "Redo (Ctrl+Shift+Z)", onclick: () => redo() }, "↷ Redo");
  const trashButton = h("button", { class: "trash", title: "Clear the label (undoable)", "aria-label": "Clear", onclick: () => clearAll() });
  trashButton.innerHTML = TRASH_ICON; // a constant SVG, no user data
  const fromPrediction = h("button", { title: "Replace the label with the prediction (undoable)", onclick: () => startFromPrediction() }, "Start from prediction");
  const zoomIn = h("button", { title: "Zoom in (+, or the wheel)", "aria-label": "Zoom in", onclick: () => zoomCenter(1.25) }, "+");
  const zoomOut = h("button", { title: "Zoom out (-, or the wheel)", "aria-label": "Zoom out", onclick: () => zoomCenter(0.8) }, "-");
  const zoomFit = h("button", { title: "Fit (0)", onclick: () => fit() }, "Fit");
  const saveButton = h("button", { class: "save", onclick: () => save("save") }, "Save draft");
  const submitButton = h("button", { class: "submit", onclick: () => save("submit") }, "Submit");
  const deleteButton = h("button", { class: "delete", onclick: () => save("delete") }, "Delete");
  const status = h("div", { class: "status" });
  const errorBox = h("div", { class: "error" });

  const imageCanvas = h("canvas", { class: "image", width: String(W), height: String(H) });
  const predCanvas = h("canvas", { class: "prediction", width: String(W), height: String(H) });
  const labelCanvas = h("canvas", { class: "labels", width: String(W), height: String(H) });
  const stage = h("div", { class: "stage" }, imageCanvas, predCanvas, labelCanvas);
  const cursor = h("div", { class: "cursor" });
  const viewport = h("div", { class: "view" }, stage, cursor);
  const palette = h("div", { class: "palette" });

  const bar1 = h("div", { class: "bar" });
  if (segmentation) {
    bar1.append(
      tool("brush", "✎ Marker", "Marker (B)"),
      tool("eraser", "⌫ Eraser", "Eraser (E)"),
      tool("fill", "◍ Fill", "Flood fill (F)"),
      tool("pan", "✥ Pan", "Pan (H, or hold Space)"),
      h("label", { title: "Marker size ([ and ])" }, "Size", sizeInput, sizeLabel),
      h("label", { title: "Paint only background or this class; erase only this class" }, preserveBox, "Preserve other labels"),
      undoButton,
      redoButton,
      trashButton,
    );
  } else {
    bar1.append(tool("pan", "✥ Pan", "Pan (H, or hold Space)"));
  }
  bar1.append(tool("window", "◐ W/L", "Window / level: drag (W)"), windowSelect, zoomIn, zoomOut, zoomFit);
  const bar2 = h("div", { class: "bar" });
  if (segmentation) {
    bar2.append(h("label", { title: "Overlay opacity" }, "Opacity", opacityInput), h("label", {}, predictionBox, "Show prediction"), fromPrediction);
  }
  const actions = h("div", { class: "bar" }, saveButton, submitButton, deleteButton);
  root.append(bar1, bar2, viewport, palette, actions, status, errorBox);

  const imageCtx = imageCanvas.getContext("2d");
  const labelCtx = labelCanvas.getContext("2d");
  const predCtx = predCanvas.getContext("2d");
  const imageData = imageCtx.createImageData(W, H);
  const labelData = labelCtx.createImageData(W, H);
  const labels32 = new Uint32Array(labelData.data.buffer);
  let table = colorTable(model.get("classes"), model.get("opacity"));

  // -- drawing the layers ---------------------------------------------------------------
  function drawImage() {
    applyWindow(values, channels, windowState.center, windowState.width, imageData.data, model.get("invert"));
    imageCtx.putImageData(imageData, 0, 0);
  }

  let dirty = null;
  let frameRequested = false;
  function invalidate(box) {
    if (!box) return;
    dirty = growBox(dirty || emptyBox(), box);
    if (!frameRequested) {
      frameRequested = true;
      requestAnimationFrame(flush);
    }
  }
  function flush() {
    frameRequested = false;
    if (!dirty) return;
    const t0 = performance.now();
    const box = dirty;
    dirty = null;
    paintOverlay(map, W, table, labels32, box);
    labelCtx.putImageData(labelData, 0, 0, box.x0, box.y0, box.x1 - box.x0 + 1, box.y1 - box.y0 + 1);
    stats.frames.push(performance.now() - t0 + strokeWork);
    strokeWork = 0;
  }
  const whole = () => ({ x0: 0, y0: 0, x1: W - 1, y1: H - 1 });

  function drawPrediction() {
    predCtx.clearRect(0, 0, W, H);
    if (!prediction || !model.get("show_prediction")) return;
    const data = predCtx.createImageData(W, H);
    const predTable = colorTable(model.get("classes"), 0.35);
    paintOverlay(prediction, W, predTable, new Uint32Array(data.data.buffer), whole());
    predCtx.putImageData(data, 0, 0);
  }

  function applyView() {
    stage.style.transform = `translate(${view.tx}px, ${view.ty}px) scale(${view.scale})`;
    stage.classList.toggle("pixelated", view.scale >= 2);
    updateCursor();
  }
  function fit() {
    view = fitView(W, H, viewport.clientWidth || 600, viewport.clientHeight || 520);
    applyView();
  }
  function zoomCenter(factor) {
    view = zoomAt(view, factor, viewport.clientWidth / 2, viewport.clientHeight / 2);
    applyView();
  }

  // -- classes ----------------------------------------------------------------------------
  function renderPalette() {
    palette.replaceChildren();
    const chosen = new Set(model.get("value"));
    const scores = model.get("prediction_scores") || {};
    model.get("classes").forEach((c, i) => {
      const pressed = segmentation ? c.index === model.get("active_class") : chosen.has(c.index);
      const score = scores[String(c.index)];
      const box = h(
        "div",
        { class: "class", role: "button", "aria-pressed": String(pressed), title: `${c.description || c.name}${i < 9 ? ` (key ${i + 1})` : ""}`, "data-index": String(c.index) },
        h("span", { class: "swatch", style: `background:${c.color}` }),
        h("span", { class: "name" }, c.name), // textContent: user strings are never parsed as HTML
      );
      if (score !== undefined) box.append(h("span", { class: "score" }, `${Math.round(score * 100)}%`));
      box.addEventListener("click", () => chooseClass(c.index));
      palette.append(box);
    });
  }
  function chooseClass(index) {
    if (segmentation) {
      model.set("active_class", index);
      if (currentTool === "eraser" || currentTool === "pan" || currentTool === "window") setTool("brush");
    } else {
      const chosen = new Set(model.get("value"));
      if (model.get("multi_label")) chosen.has(index) ? chosen.delete(index) : chosen.add(index);
      else {
        chosen.clear();
        chosen.add(index);
      }
      model.set("value", [...chosen].sort((a, b) => a - b));
    }
    model.save_changes();
  }

  // -- tools ------------------------------------------------------------------------------
  let currentTool = model.get("tool");
  function setTool(name) {
    if (!toolButtons[name]) return;
    currentTool = name;
    model.set("tool", name);
    model.save_changes();
    for (const [k, b] of Object.entries(toolButtons)) b.setAttribute("aria-pressed", String(k === name));
    viewport.style.cursor = name === "pan" ? "grab" : name === "window" ? "ns-resize" : name === "fill" ? "cell" : "none";
    updateCursor();
  }
  function setBrushSize(size) {
    size = Math.max(1, Math.min(200, Math.round(size)));
    sizeInput.value = String(size);
    sizeLabel.textContent = `${size}px`;
    model.set("brush_size", size);
    model.save_changes();
    updateCursor();
  }

  let pointer = null; // last pointer position in viewport pixels
  function updateCursor() {
    const show = segmentation && pointer && (currentTool === "brush" || currentTool === "eraser") && !spaceDown;
    cursor.style.display = show ? "block" : "none";
    if (!show) return;
    const d = model.get("brush_size") * view.scale;
    cursor.style.width = cursor.style.height = `${d}px`;
    cursor.style.left = `${pointer.x - d / 2}px`;
    cursor.style.top = `${pointer.y - d / 2}px`;
  }

  // -- editing ----------------------------------------------------------------------------
  let stroke = null;
  let strokeWork = 0;
  function beginEdit() {
    before.set(map);
  }
  function endEdit(box, reason) {
    if (history.record(before, map, W, box)) sendMask(reason, box);
    refreshButtons();
  }
  function paintTo(p) {
    const t0 = performance.now();
    const value = currentTool === "eraser" ? 0 : model.get("active_class");
    const allow = preserveRule(model.get("preserve_labels"), value, model.get("active_class"));
    const box = strokeSegment(map, W, H, stroke.last.x, stroke.last.y, p.x, p.y, model.get("brush_size"), value, allow);
    stroke.last = p;
    if (box) {
      growBox(stroke.box, box);
      invalidate(box);
    }
    strokeWork += performance.now() - t0;
  }
  function undo() {
    const box = history.undo(map, W);
    if (box) {
      invalidate(box);
      sendMask("undo", box);
    }
    refreshButtons();
  }
  function redo() {
    const box = history.redo(map, W);
    if (box) {
      invalidate(box);
      sendMask("redo", box);
    }
    refreshButtons();
  }
  function clearAll() {
    beginEdit();
    map.fill(0);
    invalidate(whole());
    endEdit(whole(), "clear");
  }
  function startFromPrediction() {
    if (!prediction) return;
    beginEdit();
    map.set(prediction);
    invalidate(whole());
    endEdit(whole(), "prediction");
  }
  function refreshButtons() {
    const busy = model.get("busy");
    undoButton.disabled = !history.canUndo;
    redoButton.disabled = !history.canRedo;
    fromPrediction.disabled = !prediction;
    predictionBox.disabled = !prediction;
    const bound = model.get("bound");
    saveButton.style.display = deleteButton.style.display = bound ? "" : "none";
    saveButton.disabled = submitButton.disabled = deleteButton.disabled = busy;
  }

  // -- talking to Python ------------------------------------------------------------------
  // Messages leave in the order the edits happened, even though compressing is async:
  // a later small stroke must never overtake an earlier big one.
  let outbox = Promise.resolve();
  function enqueue(task) {
    outbox = outbox.then(task).catch((e) => (errorBox.textContent = `Could not send the label: ${e}`));
    return outbox;
  }

  // Only the changed box travels (the whole map when the box is most of it).
  function sendMask(reason, box = null) {
    const mySeq = ++seq;
    const t0 = performance.now();
    const content = { kind: "mask", seq: mySeq, reason };
    let bytes; // a copy of the state at this edit, whatever comes next
    let h = H;
    let w = W;
    if (box && !boxIsEmpty(box) && (box.x1 - box.x0 + 1) * (box.y1 - box.y0 + 1) < (W * H) / 2) {
      w = box.x1 - box.x0 + 1;
      h = box.y1 - box.y0 + 1;
      content.region = [box.x0, box.y0, w, h];
      bytes = copyBox(map, W, box);
    } else {
      bytes = map.slice();
    }
    return enqueue(async () => {
      const wire = await encodeMask(bytes, h, w);
      stats.wireBytes.push(wire.length);
      pending.set(mySeq, t0);
      model.send(content, undefined, [wire.buffer]);
    });
  }
  function save(kind) {
    if (model.get("busy")) return; // a double click cannot double-submit
    model.set("busy", true);
    model.save_changes();
    refreshButtons();
    const content = { kind, seq: ++seq };
    if (!segmentation) content.value = model.get("value");
    const bytes = segmentation && kind !== "delete" ? map.slice() : null;
    return enqueue(async () => {
      const buffers = bytes ? [(await encodeMask(bytes, H, W)).buffer] : [];
      model.send(content, undefined, buffers);
    });
  }
  function onMessage(msg, buffers) {
    if (msg.kind === "ack") {
      const t0 = pending.get(msg.seq);
      if (t0 !== undefined) {
        stats.roundTrips.push(performance.now() - t0);
        pending.delete(msg.seq);
      }
    } else if (msg.kind === "mask" && buffers && buffers.length) {
      decodeMask(toUint8(buffers[0])).then(({ map: incoming }) => {
        if (incoming.length !== map.length) return;
        if (msg.target === "prediction") {
          prediction = incoming;
          drawPrediction();
        } else {
          map.set(incoming);
          if (msg.reset_history) {
            history.done = [];
            history.undone = [];
          }
          invalidate(whole());
        }
        refreshButtons();
      });
    }
  }
  model.on("msg:custom", onMessage);
  disposers.push(() => model.off("msg:custom", onMessage));
  model.send({ kind: "ready" });

  // -- pointer and keyboard ----------------------------------------------------------------
  let spaceDown = false;
  let drag = null;
  function local(e) {
    const r = viewport.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  }
  viewport.addEventListener("pointerdown", (e) => {
    root.focus({ preventScroll: true });
    const p = local(e);
    pointer = p;
    viewport.setPointerCapture(e.pointerId);
    const mode = spaceDown || e.button === 1 ? "pan" : currentTool;
    if (mode === "pan") {
      drag = { kind: "pan", x: p.x, y: p.y, view: { ...view } };
      viewport.style.cursor = "grabbing";
    } else if (mode === "window") {
      drag = { kind: "window", x: p.x, y: p.y, win: { ...windowState } };
    } else if (segmentation && mode === "fill") {
      const q = toImage(view, p.x, p.y);
      beginEdit();
      const box = floodFill(map, W, H, q.x, q.y, model.get("active_class"));
      invalidate(box);
      endEdit(box, "fill");
    } else if (segmentation && (mode === "brush" || mode === "eraser") && e.button === 0) {
      const q = toImage(view, p.x, p.y);
      beginEdit();
      stroke = { last: q, box: emptyBox() };
      paintTo(q);
    }
    e.preventDefault();
  });
  viewport.addEventListener("pointermove", (e) => {
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    pointer = local(e);
    if (stroke) {
      for (const ev of events.length ? events : [e]) {
        const q = local(ev);
        paintTo(toImage(view, q.x, q.y));
      }
    }
    else if (drag && drag.kind === "pan") {
      view = { ...drag.view, tx: drag.view.tx + pointer.x - drag.x, ty: drag.view.ty + pointer.y - drag.y };
      applyView();
    } else if (drag && drag.kind === "window") {
      const k = Math.max(drag.win.width, 1) / 300;
      windowState = { center: drag.win.center - (pointer.y - drag.y) * k, width: Math.max(1e-3, drag.win.width + (pointer.x - drag.x) * k) };
      drawImage();
    }
    updateCursor();
  });
  const finish = (e) => {
    if (stroke) {
      const box = stroke.box;
      stroke = null;
      endEdit(boxIsEmpty(box) ? null : box, "stroke");
    }
    if (drag && drag.kind === "window") {
      model.set("window", { ...windowState });
      model.save_changes();
    }
    drag = null;
    if (currentTool === "pan") viewport.style.cursor = "grab";
    if (e && viewport.hasPointerCapture(e.pointerId)) viewport.releasePointerCapture(e.pointerId);
  };
  viewport.addEventListener("pointerup", finish);
  viewport.addEventListener("pointercancel", finish);
  viewport.addEventListener("pointerleave", () => {
    pointer = null;
    updateCursor();
  });
  viewport.addEventListener(
    "wheel",
    (e) => {
      const p = local(e);
      view = zoomAt(view, Math.exp(-e.deltaY * 0.0015), p.x, p.y);
      applyView();
      e.preventDefault();
    },
    { passive: false },
  );
  root.addEventListener("keydown", (e) => {
    const key = e.key;
    const mod = e.ctrlKey || e.metaKey;
    let handled = true;
    if (mod && key.toLowerCase() === "z") e.shiftKey ? redo() : undo();
    else if (mod && key.toLowerCase() === "y") redo();
    else if (mod) handled = false;
    else if (key === " ") {
      spaceDown = true;
      viewport.style.cursor = "grab";
      updateCursor();
    } else if (/^[1-9]$/.test(key)) {
      const c = model.get("classes")[Number(key) - 1];
      if (c) chooseClass(c.index);
    } else if (key === "[") setBrushSize(model.get("brush_size") * 0.8 - 1);
    else if (key === "]") setBrushSize(model.get("brush_size") * 1.25 + 1);
    else if (key === "b") setTool("brush");
    else if (key === "e") setTool("eraser");
    else if (key === "f") setTool("fill");
    else if (key === "h") setTool("pan");
    else if (key === "w") setTool("window");
    else if (key === "+" || key === "=") zoomCenter(1.25);
    else if (key === "-") zoomCenter(0.8);
    else if (key === "0") fit();
    else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  });
  root.addEventListener("keyup", (e) => {
    if (e.key === " ") {
      spaceDown = false;
      setTool(currentTool);
      e.stopPropagation();
    }
  });

  // -- controls bound to traits -----------------------------------------------------------
  sizeInput.addEventListener("input", () => setBrushSize(Number(sizeInput.value)));
  opacityInput.addEventListener("input", () => {
    model.set("opacity", Number(opacityInput.value) / 100);
    model.save_changes();
  });
  preserveBox.checked = model.get("preserve_labels");
  preserveBox.addEventListener("change", () => {
    model.set("preserve_labels", preserveBox.checked);
    model.save_changes();
  });
  predictionBox.checked = model.get("show_prediction");
  predictionBox.addEventListener("change", () => {
    model.set("show_prediction", predictionBox.checked);
    model.save_changes();
  });
  const choices = windowChoices(meta.dtype, values, channels, model.get("window"), model.get("window_presets"));
  const presets = choices.options;
  for (const name of Object.keys(presets)) windowSelect.append(h("option", { value: name }, name));
  windowSelect.value = choices.selected;
  windowState = { ...presets[choices.selected] };
  windowSelect.addEventListener("change", () => {
    windowState = { ...presets[windowSelect.value] };
    model.set("window", { ...windowState });
    model.save_changes();
    drawImage();
  });

  const onChange = {
    "change:opacity": () => {
      table = colorTable(model.get("classes"), model.get("opacity"));
      opacityInput.value = String(Math.round(model.get("opacity") * 100));
      invalidate(whole());
    },
    "change:classes": () => {
      table = colorTable(model.get("classes"), model.get("opacity"));
      renderPalette();
      invalidate(whole());
    },
    "change:active_class": renderPalette,
    "change:value": renderPalette,
    "change:prediction_scores": renderPalette,
    "change:show_prediction": () => {
      predictionBox.checked = model.get("show_prediction");
      drawPrediction();
    },
    "change:invert": drawImage,
    "change:busy": refreshButtons,
    "change:bound": refreshButtons,
    "change:status": () => (status.textContent = model.get("status")),
    "change:error": () => (errorBox.textContent = model.get("error")),
    "change:brush_size": () => setBrushSize(model.get("brush_size")),
    "change:tool": () => model.get("tool") !== currentTool && setTool(model.get("tool")),
  };
  for (const [event, fn] of Object.entries(onChange)) {
    model.on(event, fn);
    disposers.push(() => model.off(event, fn));
  }

  // -- first paint ------------------------------------------------------------------------
  drawImage();
  renderPalette();
  setBrushSize(model.get("brush_size"));
  setTool(segmentation ? currentTool : "pan");
  status.textContent = model.get("status");
  errorBox.textContent = model.get("error");
  refreshButtons();
  let fitted = false;
  const resize = new ResizeObserver(() => {
    if (!fitted && viewport.clientWidth) {
      fitted = true; // fit once the viewport has a size; later resizes keep the user's zoom
      fit();
    }
  });
  resize.observe(viewport);
  disposers.push(() => resize.disconnect());
  return () => disposers.forEach((d) => d());
}

export default { render };
