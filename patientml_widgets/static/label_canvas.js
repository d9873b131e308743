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
 * @prop {number[]} predicted classification: the class indices the prediction calls (at its thresholds)
 * @prop {string} status
 * @prop {string} error
 * @prop {boolean} busy
 * @prop {boolean} bound
 * @prop {DataView} _image zlib of the image's little-endian bytes
 * @prop {{ width: number, height: number, channels: number, dtype: string }} _image_meta
 * @prop {Record<string, PlaneInfo>} planes volume mode: each plane's layout ({} for a 2-D image)
 * @prop {string} plane the plane shown
 * @prop {number} slice_index the slice shown
 * @prop {number[]} crosshair (z, y, x): the voxel the planes meet at
 * @prop {number[]} labeled_slices slices of the shown plane holding a class other than the background
 * @prop {string} last_operation the volume operation "Undo" reverts ("" when none)
 * @prop {{ name: string, label: string }[]} engines interactive segmentation: the engines offered
 * @prop {string} engine the engine the Smart tool asks
 */

/**
 * How a plane is cut from the (Z, Y, X) volume (patientml_widgets/imaging/planes.py).
 * @typedef PlaneInfo
 * @prop {number} axis the array axis the plane is normal to
 * @prop {number} rows the array axis down the image
 * @prop {number} cols the array axis across it
 * @prop {boolean} flip_rows
 * @prop {boolean} flip_cols
 * @prop {number} depth slices
 * @prop {number} height
 * @prop {number} width
 * @prop {number} row_mm
 * @prop {number} col_mm
 * @prop {number} slice_mm
 * @prop {number} origin_mm the world position (RAS mm) of slice 0 along the plane's normal
 * @prop {number} step_mm and its change per slice
 */

/** @typedef {"brush" | "eraser" | "fill" | "pan" | "window" | "crosshair" | "prompt"} Tool */
/** @typedef {{ points: [number, number, boolean][], box: [number, number, number, number] | null, scribbles: { positive: boolean, points: [number, number][], width: number }[] }} Prompts the Smart tool's prompts, image pixels */
/** @typedef {{ mask: Uint8Array, box: Box | null, key: string }} Proposal an engine's proposal for one image (a volume's slice `key`) */
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

/** The colour shown for a class whose colour is not written #rrggbb. */
export const FALLBACK_COLOR = "#808080";

/**
 * `color` if it is written "#rrggbb", else FALLBACK_COLOR: class colours come from Python (and
 * from project folders anyone may have written), so only this form ever reaches the page.
 * @param {unknown} color
 * @returns {string}
 */
export function safeColor(color) {
  return typeof color === "string" && /^#[0-9a-fA-F]{6}$/.test(color) ? color : FALLBACK_COLOR;
}

/**
 * @param {unknown} hex "#rrggbb" (anything else reads as FALLBACK_COLOR)
 * @returns {[number, number, number]}
 */
function parseColor(hex) {
  const n = parseInt(safeColor(hex).slice(1), 16);
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
// Volumes: where a voxel shows in a plane, and the slices the browser keeps.

/**
 * Where voxel `at` (z, y, x) shows in `plane`: its slice and its pixel.
 * @param {PlaneInfo} plane
 * @param {number[]} at
 * @returns {{ index: number, x: number, y: number }}
 */
export function pixelOf(plane, at) {
  const r = at[plane.rows];
  const c = at[plane.cols];
  return { index: at[plane.axis], x: plane.flip_cols ? plane.width - 1 - c : c, y: plane.flip_rows ? plane.height - 1 - r : r };
}

/**
 * The voxel (z, y, x) under pixel (x, y) of slice `index` of `plane`.
 * @param {PlaneInfo} plane
 * @param {number} index
 * @param {number} x
 * @param {number} y
 * @returns {number[]}
 */
export function voxelOf(plane, index, x, y) {
  const at = [0, 0, 0];
  at[plane.axis] = index;
  at[plane.rows] = plane.flip_rows ? plane.height - 1 - y : y;
  at[plane.cols] = plane.flip_cols ? plane.width - 1 - x : x;
  return at;
}

/**
 * The slices to fetch around `index` of a plane of `depth` slices, nearest first.
 * @param {number} index
 * @param {number} depth
 * @param {number} [reach]
 * @returns {number[]}
 */
export function prefetchOrder(index, depth, reach = 3) {
  const out = [];
  for (let d = 1; d <= reach; d++) {
    if (index + d < depth) out.push(index + d);
    if (index - d >= 0) out.push(index - d);
  }
  return out;
}

/** @typedef {{ values: ImageValues, meta: { width: number, height: number, channels: number, dtype: string }, label: Uint8Array | null, prediction: Uint8Array | null }} Slice */

/** Slices by "plane:index", least recently used dropped first once over `limit` bytes. */
export class SliceCache {
  /** @param {number} limit */
  constructor(limit) {
    this.limit = limit;
    this.bytes = 0;
    /** @type {Map<string, Slice>} */
    this.entries = new Map();
  }

  /**
   * @param {string} key
   * @returns {Slice | undefined}
   */
  get(key) {
    const entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key); // most recently used last
      this.entries.set(key, entry);
    }
    return entry;
  }

  /**
   * @param {string} key
   * @param {Slice} entry
   */
  set(key, entry) {
    const old = this.entries.get(key);
    if (old) this.bytes -= SliceCache.size(old);
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.bytes += SliceCache.size(entry);
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.limit || k === key) break;
      this.entries.delete(k);
      this.bytes -= SliceCache.size(e);
    }
  }

  /**
   * Forget the labels (they changed elsewhere), except those of `keep` (a plane name) when given.
   * @param {string | null} [keep]
   */
  dropLabels(keep = null) {
    for (const [k, e] of this.entries) {
      if (keep === null || !k.startsWith(`${keep}:`)) {
        if (e.label) this.bytes -= e.label.length;
        e.label = null;
      }
    }
  }

  /** @param {Slice} e */
  static size(e) {
    return e.values.byteLength + (e.label ? e.label.length : 0) + (e.prediction ? e.prediction.length : 0);
  }
}

// ---------------------------------------------------------------------------------------
// Interactive segmentation: prompts, the proposal layer, accepting.

/** @returns {Prompts} */
export function noPrompts() {
  return { points: [], box: null, scribbles: [] };
}

/**
 * What a set of prompts holds, for the label's record of how it was made.
 * @param {Prompts} prompts
 */
export function promptCounts(prompts) {
  const positive = prompts.points.filter((p) => p[2]).length;
  return { positive, negative: prompts.points.length - positive, box: prompts.box ? 1 : 0, scribbles: prompts.scribbles.length };
}

/**
 * A full-size 0/1 mask from a region's patch ([x, y, width, height]), and the patch's box.
 * @param {number} width
 * @param {number} height
 * @param {number[] | null} region
 * @param {Uint8Array | null} patch
 * @returns {{ mask: Uint8Array, box: Box | null }}
 */
export function placeRegion(width, height, region, patch) {
  const mask = new Uint8Array(width * height);
  if (!region || !patch) return { mask, box: null };
  const [x0, y0, w, h] = region;
  if (x0 < 0 || y0 < 0 || w < 1 || h < 1 || x0 + w > width || y0 + h > height || patch.length !== w * h) return { mask, box: null };
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) mask[(y0 + y) * width + x0 + x] = patch[y * w + x] ? 1 : 0;
  }
  return { mask, box: { x0, y0, x1: x0 + w - 1, y1: y0 + h - 1 } };
}

/**
 * The proposal as overlay pixels: a tint inside, an opaque outline on its edge (a pixel of the mask
 * with a 4-neighbour outside it or on the image's border).
 * @param {Uint8Array} mask 0/1
 * @param {number} width
 * @param {number} height
 * @param {string} color "#rrggbb"
 * @param {Uint32Array} pixels32 RGBA pixels to fill (little-endian ABGR words)
 */
export function paintProposal(mask, width, height, color, pixels32) {
  const [r, g, b] = parseColor(safeColor(color));
  const word = (/** @type {number} */ a) => ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
  const tint = word(90);
  const edge = word(255);
  pixels32.fill(0);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!mask[i]) continue;
      const inner = x > 0 && x < width - 1 && y > 0 && y < height - 1 && mask[i - 1] && mask[i + 1] && mask[i - width] && mask[i + width];
      pixels32[i] = inner ? tint : edge;
    }
  }
}

/**
 * Accept a proposal into the label map: its pixels take `value` where `allow` lets them (the
 * "preserve other labels" rule). Returns the box of the pixels that changed, or null.
 * @param {Uint8Array} map
 * @param {number} width
 * @param {Proposal} proposal
 * @param {number} value
 * @param {Allow | null} allow
 * @returns {Box | null}
 */
export function acceptProposal(map, width, proposal, value, allow = null) {
  const box = proposal.box;
  if (!box) return null;
  const changed = emptyBox();
  for (let y = box.y0; y <= box.y1; y++) {
    for (let x = box.x0; x <= box.x1; x++) {
      const i = y * width + x;
      if (!proposal.mask[i] || map[i] === value || (allow && !allow(map[i]))) continue;
      map[i] = value;
      growBox(changed, { x0: x, y0: y, x1: x, y1: y });
    }
  }
  return boxIsEmpty(changed) ? null : changed;
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
.pml-lc .called { font-size: 10px; color: #137333; font-weight: 600; margin-left: 4px; }
.pml-lc .status { color: #444; min-height: 1.3em; }
.pml-lc .error { color: #c5221f; white-space: pre-wrap; }
.pml-lc label { display: inline-flex; align-items: center; gap: 3px; }
.pml-lc .slices { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin-bottom: 4px; }
.pml-lc .slider { display: inline-flex; flex-direction: column; flex: 1 1 240px; min-width: 160px; }
.pml-lc .slider input { width: 100%; margin: 0; }
.pml-lc .slider canvas { width: 100%; height: 6px; }
.pml-lc .where { font-variant-numeric: tabular-nums; color: #333; min-width: 14em; }
.pml-lc .xh { position: absolute; left: 0; top: 0; pointer-events: none; display: none; }
.pml-lc .xh div { position: absolute; background: #ffd400; opacity: .8; }
.pml-lc .stage canvas.proposal { image-rendering: pixelated; }
.pml-lc svg.marks { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; overflow: visible; }
.pml-lc .hint { color: #555; }
.pml-lc button.accept { color: #137333; border-color: #81c995; }
`;

const SVG = "http://www.w3.org/2000/svg";

const TRASH_ICON =
  '<svg width="14" height="14" viewBox="0 0 24 24" fill="none" stroke="#c5221f" stroke-width="2" aria-hidden="true">' +
  '<path d="M3 6h18M8 6V4h8v2M6 6l1 14h10l1-14M10 11v6M14 11v6"/></svg>';

/**
 * A DOM element with attributes (`class`, `on<event>` listeners, the rest as attributes) and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
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

/**
 * @param {DataView | null | undefined} dataView
 * @returns {Uint8Array}
 */
function toUint8(dataView) {
  if (!dataView) return new Uint8Array(0);
  return new Uint8Array(dataView.buffer, dataView.byteOffset, dataView.byteLength);
}

/**
 * Timing hooks for benchmarks and tests (frame times, wire sizes, round trips; volumes: ms from a
 * slice change to the slice on screen, whether the browser had it, and when the first image showed).
 * Interactive segmentation: ms from a prompt to its proposal on screen.
 * @type {{ frames: number[], wireBytes: number[], roundTrips: number[], slices: { ms: number, cached: boolean }[], shownAt: number, proposals: number[] }}
 */
export const stats = { frames: [], wireBytes: [], roundTrips: [], slices: [], shownAt: 0, proposals: [] };

// render() composes four parts that share one Canvas object, `s`: the toolbar (buttons,
// class boxes, palette), the view (the canvas stack, zoom / pan / fit, drawing the image,
// overlay and prediction), the tools (marker, eraser, fill, undo, pointer and keys) and the
// wire (the queue of mask messages, acks, trait listeners).

/** @typedef {import("@anywidget/types").AnyModel<Model>} CanvasModel */
/** @typedef {{ last: Point, box: Box }} Stroke a marker or eraser stroke in progress */
/** @typedef {{ kind: "pan", x: number, y: number, view: View } | { kind: "window", x: number, y: number, win: Window }} Drag */
/** @typedef {ReturnType<typeof toolbar>} Toolbar */
/** @typedef {ReturnType<typeof layers>} Layers */

/** @typedef {CanvasData & { ui: Toolbar, layers: Layers }} Canvas what the parts of one rendered canvas share */

/**
 * @typedef CanvasData
 * @prop {CanvasModel} model
 * @prop {HTMLElement} root
 * @prop {number} W image width
 * @prop {number} H image height
 * @prop {number} channels
 * @prop {boolean} segmentation
 * @prop {ImageValues} values the image's original values
 * @prop {Record<string, Window>} presets the window menu's entries
 * @prop {Window} windowState the window shown
 * @prop {Uint8Array} map the label map: the truth while drawing
 * @prop {Uint8Array} before the map as it was before the edit in progress
 * @prop {Uint8Array | null} prediction
 * @prop {UndoStack} history
 * @prop {View} view
 * @prop {Tool} tool the tool in use
 * @prop {Point | null} pointer the last pointer position in viewport pixels
 * @prop {boolean} spaceDown
 * @prop {Stroke | null} stroke
 * @prop {number} strokeWork ms of painting since the last frame
 * @prop {Drag | null} drag
 * @prop {Box | null} dirty overlay pixels to repaint at the next frame
 * @prop {boolean} frameRequested
 * @prop {Uint32Array} table the overlay's colour table
 * @prop {number} seq the last message's number
 * @prop {Map<number, number>} pending send times of the masks not yet acked, by seq
 * @prop {Promise<unknown>} outbox the messages in order
 * @prop {(() => void)[]} disposers
 * @prop {number} aspect height of a pixel over its width on screen (a volume's row_mm / col_mm)
 * @prop {VolumeState | null} volume volume mode's state (null for a 2-D image)
 * @prop {Prompts} prompts the Smart tool's prompts, on the image `promptKey` names
 * @prop {string} promptKey "" (a 2-D image) or the volume slice ("plane:index") the prompts are on
 * @prop {Proposal | null} proposal the engine's latest answer
 * @prop {number} promptSeq the message number of the prompts whose proposal is awaited (0: none)
 * @prop {number} promptSent when they were sent (performance.now())
 * @prop {PromptDrag | null} promptDrag a box or scribble being drawn
 */

/** @typedef {{ start: Point, last: Point, screen: Point, moved: boolean, negative: boolean, scribble: [number, number][] | null }} PromptDrag */

/**
 * @typedef VolumeState
 * @prop {Record<string, PlaneInfo>} planes
 * @prop {string} plane the plane shown
 * @prop {number} index the slice shown
 * @prop {number[]} at the crosshair (z, y, x)
 * @prop {SliceCache} cache slices received, by "plane:index"
 * @prop {Map<string, UndoStack>} histories undo per slice
 * @prop {Map<string, number>} asked slices requested and not yet here, with the edit count then
 * @prop {string | null} waiting the slice to show when it arrives
 * @prop {number} edits edits so far (a reply older than an edit of its slice does not replace it)
 * @prop {number} wheel the wheel's travel not yet turned into slices
 * @prop {[any, DataView[]][]} deferred prefetched slices that arrived while another was awaited
 * @prop {{ key: string, t0: number, cached: boolean } | null} [started] the slice change being timed
 */

/** @type {import("@anywidget/types").Render<Model>} */
async function render({ model, el }) {
  const style = document.createElement("style");
  style.textContent = CSS;
  const root = h("div", { class: "pml-lc", tabindex: "0", "data-lm-suppress-shortcuts": "true" });
  Object.assign(root, { pmlStats: stats }); // read by the benchmarks
  el.append(style, root);
  const s = await canvasState(model, root);
  root.append(s.ui.bar1, s.ui.bar2);
  if (s.volume) root.append(s.ui.slices.bar);
  root.append(s.layers.viewport, s.ui.palette, s.ui.actions, s.ui.status, s.ui.errorBox);
  listen(s);
  bindPointer(s);
  bindKeys(s);
  bindControls(s);
  followTraits(s);
  firstPaint(s);
  stats.shownAt = Date.now(); // the first image is on screen (a volume's middle slice, from the traits)
  Object.assign(root, { pmlVolume: s.volume }); // read by the benchmarks (the slice cache's bytes)
  return () => s.disposers.forEach((d) => d());
}

/**
 * The shared state: the image's values, an empty label map, the toolbar and the canvas stack.
 * @param {CanvasModel} model
 * @param {HTMLElement} root
 * @returns {Promise<Canvas>}
 */
async function canvasState(model, root) {
  const meta = model.get("_image_meta");
  const W = meta.width;
  const H = meta.height;
  const values = imageValues(await inflate(toUint8(model.get("_image"))), meta.dtype);
  const choices = windowChoices(meta.dtype, values, meta.channels, model.get("window"), model.get("window_presets"));
  /** @type {CanvasData} */
  const data = {
    model,
    root,
    W,
    H,
    channels: meta.channels,
    segmentation: model.get("mode") === "segmentation",
    values,
    presets: choices.options,
    windowState: { ...choices.options[choices.selected] },
    map: new Uint8Array(W * H),
    before: new Uint8Array(W * H),
    prediction: null,
    history: new UndoStack(200),
    view: { scale: 1, tx: 0, ty: 0 },
    tool: model.get("tool"),
    pointer: null,
    spaceDown: false,
    stroke: null,
    strokeWork: 0,
    drag: null,
    dirty: null,
    frameRequested: false,
    table: colorTable(model.get("classes"), model.get("opacity")),
    seq: 0,
    pending: new Map(),
    outbox: Promise.resolve(),
    disposers: [],
    aspect: 1,
    volume: volumeState(model, meta),
    prompts: noPrompts(),
    promptKey: "",
    proposal: null,
    promptSeq: 0,
    promptSent: 0,
    promptDrag: null,
  };
  const s = /** @type {Canvas} */ (data); // complete once it has the toolbar and the layers
  s.ui = toolbar(s);
  s.ui.windowSelect.value = choices.selected;
  s.layers = layers(s);
  return s;
}

/**
 * Volume mode's state, or null for a 2-D image. The cache holds at most about the volume's own
 * bytes (images and labels), so the browser never holds more than twice the volume.
 * @param {CanvasModel} model
 * @param {{ width: number, height: number, channels: number, dtype: string }} meta
 * @returns {VolumeState | null}
 */
function volumeState(model, meta) {
  const planes = model.get("planes") || {};
  if (!planes.axial) return null;
  const bytesPerVoxel = ({ uint8: 1, uint16: 2, int16: 2, float32: 4 })[meta.dtype] || 4;
  const a = planes.axial;
  const plane = model.get("plane");
  const index = model.get("slice_index");
  return {
    planes,
    plane,
    index,
    at: [...model.get("crosshair")],
    cache: new SliceCache(a.depth * a.height * a.width * (bytesPerVoxel + 1)),
    histories: new Map(),
    asked: new Map(),
    waiting: sliceKey(plane, index), // the first slice's label comes with Python's answer to "ready"
    edits: 0,
    wheel: 0,
    deferred: [],
  };
}

/**
 * @param {string} plane
 * @param {number} index
 */
function sliceKey(plane, index) {
  return `${plane}:${index}`;
}

/** @param {Canvas} s */
function firstPaint(s) {
  const { model, ui } = s;
  drawImage(s);
  renderPalette(s);
  setBrushSize(s, model.get("brush_size"));
  setTool(s, s.segmentation ? s.tool : "pan");
  ui.status.textContent = model.get("status");
  ui.errorBox.textContent = model.get("error");
  if (s.volume) {
    const info = s.volume.planes[s.volume.plane];
    resize(s, s.W, s.H, info.row_mm / info.col_mm);
    updateSliceBar(s);
  }
  refreshButtons(s);
  let fitted = false;
  const observer = new ResizeObserver(() => {
    if (!fitted && s.layers.viewport.clientWidth) {
      fitted = true; // fit once the viewport has a size; later resizes keep the user's zoom
      fit(s);
    }
  });
  observer.observe(s.layers.viewport);
  s.disposers.push(() => observer.disconnect());
}

// -- toolbar: buttons, class boxes, palette ------------------------------------------------

/**
 * The controls, the palette and the status lines; buttons call the tools and the wire.
 * @param {Canvas} s
 */
function toolbar(s) {
  const { model, segmentation } = s;
  /** @type {Partial<Record<Tool, HTMLButtonElement>>} */
  const toolButtons = {};
  /** @type {(name: Tool, label: string, title: string) => HTMLButtonElement} */
  const tool = (name, label, title) =>
    (toolButtons[name] = h("button", { title, "aria-pressed": "false", onclick: () => setTool(s, name) }, label));
  const sizeInput = h("input", { type: "range", min: "1", max: "200", value: String(model.get("brush_size")), title: "Marker size ([ and ])" });
  const sizeLabel = h("span", {}, "");
  const opacityInput = h("input", { type: "range", min: "0", max: "100", value: String(Math.round(model.get("opacity") * 100)), title: "Overlay opacity" });
  const preserveBox = h("input", { type: "checkbox" });
  const predictionBox = h("input", { type: "checkbox" });
  const windowSelect = h("select", { title: "Window / level" });
  for (const name of Object.keys(s.presets)) windowSelect.append(h("option", { value: name }, name));
  const undoButton = h("button", { title: "Undo (Ctrl+Z)", onclick: () => undo(s) }, "↶ Undo");
  const redoButton = h("button", { title: "Redo (Ctrl+Shift+Z)", onclick: () => redo(s) }, "↷ Redo");
  const trashButton = h("button", { class: "trash", title: "Clear the label (undoable)", "aria-label": "Clear", onclick: () => clearAll(s) });
  trashButton.innerHTML = TRASH_ICON; // a constant SVG, no user data
  const fromPrediction = h("button", { title: "Replace the label with the prediction (undoable)", onclick: () => startFromPrediction(s) }, "Start from prediction");
  const zoomIn = h("button", { title: "Zoom in (+, or the wheel)", "aria-label": "Zoom in", onclick: () => zoomCenter(s, 1.25) }, "+");
  const zoomOut = h("button", { title: "Zoom out (-, or the wheel)", "aria-label": "Zoom out", onclick: () => zoomCenter(s, 0.8) }, "-");
  const zoomFit = h("button", { title: "Fit (0)", onclick: () => fit(s) }, "Fit");
  const saveButton = h("button", { class: "save", onclick: () => save(s, "save") }, "Save draft");
  const submitButton = h("button", { class: "submit", onclick: () => save(s, "submit") }, "Submit");
  const deleteButton = h("button", { class: "delete", onclick: () => save(s, "delete") }, "Delete");
  const engineSelect = h("select", { title: "The engine the Smart tool asks" });
  const acceptButton = h("button", { class: "accept", title: "Accept the proposal into the label (Enter; undoable)", onclick: () => acceptPrompted(s) }, "✓ Accept");
  const rejectButton = h("button", { title: "Reject the proposal and its prompts (Esc)", onclick: () => rejectPrompted(s) }, "✕ Reject");
  const promptHint = h("span", { class: "hint" });
  const status = h("div", { class: "status" });
  const errorBox = h("div", { class: "error" });
  const palette = h("div", { class: "palette" });

  const bar1 = h("div", { class: "bar" });
  if (segmentation) {
    bar1.append(
      tool("brush", "✎ Marker", "Marker (B)"),
      tool("eraser", "⌫ Eraser", "Eraser (E)"),
      tool("fill", "◍ Fill", "Flood fill (F)"),
      tool("prompt", "✦ Smart", "Smart: click the object, Shift+click (or right-click) what is not; drag a box; Alt+drag to scribble (S)"),
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
  if (s.volume) bar1.append(tool("crosshair", "✛ Crosshair", "Crosshair: click to link the planes (C)"));
  const slices = sliceBar(s);
  const bar2 = h("div", { class: "bar" });
  if (segmentation) {
    bar2.append(h("label", { title: "Overlay opacity" }, "Opacity", opacityInput), h("label", {}, predictionBox, "Show prediction"), fromPrediction);
    bar2.append(h("label", { title: "The engine the Smart tool asks" }, "Engine", engineSelect), acceptButton, rejectButton, promptHint);
  }
  const actions = h("div", { class: "bar" }, saveButton, submitButton, deleteButton);
  // prettier-ignore
  return {
    toolButtons, sizeInput, sizeLabel, opacityInput, preserveBox, predictionBox, windowSelect, undoButton, redoButton,
    fromPrediction, saveButton, submitButton, deleteButton, status, errorBox, palette, bar1, bar2, actions, slices,
    engineSelect, acceptButton, rejectButton, promptHint,
  };
}

/**
 * Volume mode's slice bar: the planes, a slider with ticks at labeled slices, where the slice is,
 * copy the previous slice, interpolate, and undo of those.
 * @param {Canvas} s
 */
function sliceBar(s) {
  const bar = h("div", { class: "slices" });
  const vol = s.volume;
  /** @type {Record<string, HTMLButtonElement>} */
  const planeButtons = {};
  const slider = h("input", { type: "range", min: "0", max: "0", value: "0", title: "Slice (wheel, PageUp / PageDown)", "aria-label": "Slice" });
  const ticks = h("canvas", { height: "6", width: "400" });
  const where = h("span", { class: "where" });
  const copyButton = h("button", { title: "Copy the label of the previous slice onto this one (undoable)", onclick: () => operation(s, "copy_previous") }, "Copy previous slice");
  const interpolateButton = h("button", { title: "Fill the slices between labeled slices of this plane (undoable)", onclick: () => operation(s, "interpolate") }, "Interpolate");
  const undoOperation = h("button", { title: "Undo the last copy or interpolation", onclick: () => operation(s, "undo_operation") }, "Undo");
  const propagateButton = h("button", { title: "Propose this slice's label (the selected class) on the next slice; Shift+click: the previous slice", onclick: (/** @type {MouseEvent} */ e) => propagate(s, e.shiftKey ? -1 : 1) }, "Propagate ↓");
  if (!vol) return { bar, planeButtons, slider, ticks, where, copyButton, interpolateButton, undoOperation, propagateButton };
  for (const name of ["axial", "coronal", "sagittal"]) {
    if (!vol.planes[name]) continue;
    planeButtons[name] = h("button", { "aria-pressed": "false", title: `Show the ${name} plane`, onclick: () => showPlane(s, name) }, name[0].toUpperCase() + name.slice(1));
  }
  slider.addEventListener("input", () => goTo(s, vol.plane, Number(slider.value)));
  bar.append(...Object.values(planeButtons), h("span", { class: "slider" }, slider, ticks), where, copyButton, interpolateButton, undoOperation, propagateButton);
  return { bar, planeButtons, slider, ticks, where, copyButton, interpolateButton, undoOperation, propagateButton };
}

/**
 * A class's colour swatch: the colour is checked and set as one CSS property, never as style text.
 * @param {unknown} color
 */
function swatch(color) {
  const span = h("span", { class: "swatch" });
  span.style.backgroundColor = safeColor(color);
  return span;
}

/** @param {Canvas} s */
function renderPalette(s) {
  const { model, ui } = s;
  ui.palette.replaceChildren();
  const chosen = new Set(model.get("value"));
  const scores = model.get("prediction_scores") || {};
  const called = new Set(model.get("predicted") || []);
  model.get("classes").forEach((c, i) => {
    const pressed = s.segmentation ? c.index === model.get("active_class") : chosen.has(c.index);
    const score = scores[String(c.index)];
    const box = h(
      "div",
      { class: "class", role: "button", "aria-pressed": String(pressed), title: `${c.description || c.name}${i < 9 ? ` (key ${i + 1})` : ""}`, "data-index": String(c.index) },
      swatch(c.color),
      h("span", { class: "name" }, c.name), // textContent: user strings are never parsed as HTML
    );
    if (score !== undefined) box.append(h("span", { class: "score" }, `${Math.round(score * 100)}%`));
    if (called.has(c.index)) box.append(h("span", { class: "called", title: "the model's call (at its operating threshold, if it has one)" }, "predicted"));
    box.addEventListener("click", () => chooseClass(s, c.index));
    ui.palette.append(box);
  });
}

/**
 * @param {Canvas} s
 * @param {number} index
 */
function chooseClass(s, index) {
  const { model } = s;
  if (s.segmentation) {
    model.set("active_class", index);
    if (s.tool === "eraser" || s.tool === "pan" || s.tool === "window") setTool(s, "brush");
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

/** @param {Canvas} s */
function refreshButtons(s) {
  const { model, ui } = s;
  const busy = model.get("busy");
  ui.undoButton.disabled = !s.history.canUndo;
  ui.redoButton.disabled = !s.history.canRedo;
  ui.fromPrediction.disabled = !s.prediction;
  ui.predictionBox.disabled = !s.prediction;
  const bound = model.get("bound");
  ui.saveButton.style.display = ui.deleteButton.style.display = bound ? "" : "none";
  ui.saveButton.disabled = ui.submitButton.disabled = ui.deleteButton.disabled = busy;
  if (s.volume) {
    const operation = model.get("last_operation");
    ui.slices.undoOperation.disabled = !operation;
    ui.slices.undoOperation.textContent = operation ? `Undo ${operation}` : "Undo";
    ui.slices.copyButton.disabled = s.volume.index === 0;
  }
  refreshPromptBar(s);
}

/**
 * The controls that set traits: size, opacity, the check boxes, the window menu.
 * @param {Canvas} s
 */
function bindControls(s) {
  const { model, ui } = s;
  ui.sizeInput.addEventListener("input", () => setBrushSize(s, Number(ui.sizeInput.value)));
  ui.opacityInput.addEventListener("input", () => {
    model.set("opacity", Number(ui.opacityInput.value) / 100);
    model.save_changes();
  });
  ui.preserveBox.checked = model.get("preserve_labels");
  ui.preserveBox.addEventListener("change", () => {
    model.set("preserve_labels", ui.preserveBox.checked);
    model.save_changes();
  });
  ui.predictionBox.checked = model.get("show_prediction");
  ui.predictionBox.addEventListener("change", () => {
    model.set("show_prediction", ui.predictionBox.checked);
    model.save_changes();
  });
  fillEngines(s);
  ui.engineSelect.addEventListener("change", () => {
    model.set("engine", ui.engineSelect.value);
    model.save_changes();
    if (hasPrompts(s)) askProposal(s); // the same prompts, asked of the new engine
  });
  ui.windowSelect.addEventListener("change", () => {
    s.windowState = { ...s.presets[ui.windowSelect.value] };
    model.set("window", { ...s.windowState });
    model.save_changes();
    drawImage(s);
  });
}

// -- view: the canvas stack, zoom / pan / fit, drawing the layers ---------------------------

/**
 * The image, prediction and label canvases on a transformed stage, and the brush outline.
 * @param {Canvas} s
 */
function layers(s) {
  const { W, H } = s;
  const imageCanvas = h("canvas", { class: "image", width: String(W), height: String(H) });
  const predCanvas = h("canvas", { class: "prediction", width: String(W), height: String(H) });
  const labelCanvas = h("canvas", { class: "labels", width: String(W), height: String(H) });
  const proposalCanvas = h("canvas", { class: "proposal", width: String(W), height: String(H) });
  const marks = document.createElementNS(SVG, "svg");
  marks.setAttribute("class", "marks");
  const crossRow = h("div", {});
  const crossCol = h("div", {});
  const cross = h("div", { class: "xh" }, crossRow, crossCol);
  const stage = h("div", { class: "stage" }, imageCanvas, predCanvas, labelCanvas, proposalCanvas, cross);
  const cursor = h("div", { class: "cursor" });
  const viewport = h("div", { class: "view" }, stage, marks, cursor);
  const imageCtx = /** @type {CanvasRenderingContext2D} */ (imageCanvas.getContext("2d"));
  const labelCtx = /** @type {CanvasRenderingContext2D} */ (labelCanvas.getContext("2d"));
  const predCtx = /** @type {CanvasRenderingContext2D} */ (predCanvas.getContext("2d"));
  const proposalCtx = /** @type {CanvasRenderingContext2D} */ (proposalCanvas.getContext("2d"));
  const imageData = imageCtx.createImageData(W, H);
  const labelData = labelCtx.createImageData(W, H);
  const labels32 = new Uint32Array(labelData.data.buffer);
  const canvases = [imageCanvas, predCanvas, labelCanvas, proposalCanvas];
  // prettier-ignore
  return { stage, cursor, viewport, imageCtx, labelCtx, predCtx, proposalCtx, imageData, labelData, labels32, canvases, cross, crossRow, crossCol, marks };
}

/**
 * Give the canvases a new image size (a volume's planes differ) and a pixel aspect; the maps start empty.
 * @param {Canvas} s
 * @param {number} W
 * @param {number} H
 * @param {number} aspect
 */
function resize(s, W, H, aspect) {
  const L = s.layers;
  if (W !== s.W || H !== s.H) {
    s.W = W;
    s.H = H;
    s.map = new Uint8Array(W * H);
    s.before = new Uint8Array(W * H);
    for (const c of L.canvases) {
      c.width = W;
      c.height = H;
    }
    L.imageData = L.imageCtx.createImageData(W, H);
    L.labelData = L.labelCtx.createImageData(W, H);
    L.labels32 = new Uint32Array(L.labelData.data.buffer);
  }
  s.aspect = aspect > 0 && Number.isFinite(aspect) ? aspect : 1;
  for (const c of L.canvases) {
    c.style.width = `${W}px`;
    c.style.height = `${H * s.aspect}px`;
  }
}

/** @param {Canvas} s */
function drawImage(s) {
  const { imageCtx, imageData } = s.layers;
  applyWindow(s.values, s.channels, s.windowState.center, s.windowState.width, imageData.data, s.model.get("invert"));
  imageCtx.putImageData(imageData, 0, 0);
}

/**
 * Repaint `box` of the overlay at the next frame.
 * @param {Canvas} s
 * @param {Box | null} box
 */
function invalidate(s, box) {
  if (!box) return;
  s.dirty = growBox(s.dirty || emptyBox(), box);
  if (!s.frameRequested) {
    s.frameRequested = true;
    requestAnimationFrame(() => flush(s));
  }
}

/** @param {Canvas} s */
function flush(s) {
  s.frameRequested = false;
  if (!s.dirty) return;
  const t0 = performance.now();
  const box = s.dirty;
  s.dirty = null;
  paintOverlay(s.map, s.W, s.table, s.layers.labels32, box);
  s.layers.labelCtx.putImageData(s.layers.labelData, 0, 0, box.x0, box.y0, box.x1 - box.x0 + 1, box.y1 - box.y0 + 1);
  stats.frames.push(performance.now() - t0 + s.strokeWork);
  s.strokeWork = 0;
}

/**
 * @param {Canvas} s
 * @returns {Box} the whole image
 */
function whole(s) {
  return { x0: 0, y0: 0, x1: s.W - 1, y1: s.H - 1 };
}

/** @param {Canvas} s */
function drawPrediction(s) {
  const { W, H, model } = s;
  const { predCtx } = s.layers;
  predCtx.clearRect(0, 0, W, H);
  if (!s.prediction || !model.get("show_prediction")) return;
  const data = predCtx.createImageData(W, H);
  const predTable = colorTable(model.get("classes"), 0.35);
  paintOverlay(s.prediction, W, predTable, new Uint32Array(data.data.buffer), whole(s));
  predCtx.putImageData(data, 0, 0);
}

/** @param {Canvas} s */
function applyView(s) {
  const { stage } = s.layers;
  stage.style.transform = `translate(${s.view.tx}px, ${s.view.ty}px) scale(${s.view.scale})`;
  stage.classList.toggle("pixelated", s.view.scale >= 2);
  updateCursor(s);
  drawCrosshair(s);
  drawMarks(s);
}

/** @param {Canvas} s */
function fit(s) {
  const { viewport } = s.layers;
  s.view = fitView(s.W, s.H * s.aspect, viewport.clientWidth || 600, viewport.clientHeight || 520);
  applyView(s);
}

/**
 * @param {Canvas} s
 * @param {number} factor
 */
function zoomCenter(s, factor) {
  const { viewport } = s.layers;
  s.view = zoomAt(s.view, factor, viewport.clientWidth / 2, viewport.clientHeight / 2);
  applyView(s);
}

/**
 * The brush outline under the pointer, for the marker and the eraser.
 * @param {Canvas} s
 */
function updateCursor(s) {
  const { cursor } = s.layers;
  const show = s.segmentation && s.pointer && (s.tool === "brush" || s.tool === "eraser") && !s.spaceDown;
  cursor.style.display = show ? "block" : "none";
  if (!show || !s.pointer) return;
  const d = s.model.get("brush_size") * s.view.scale;
  const dy = d * s.aspect;
  cursor.style.width = `${d}px`;
  cursor.style.height = `${dy}px`;
  cursor.style.left = `${s.pointer.x - d / 2}px`;
  cursor.style.top = `${s.pointer.y - dy / 2}px`;
}

// -- tools: marker, eraser, fill, undo, pointer and keys ------------------------------------

/**
 * @param {Canvas} s
 * @param {Tool} name
 */
function setTool(s, name) {
  const { model, ui } = s;
  if (!ui.toolButtons[name]) return;
  s.tool = name;
  model.set("tool", name);
  model.save_changes();
  for (const [k, b] of Object.entries(ui.toolButtons)) b.setAttribute("aria-pressed", String(k === name));
  refreshPromptBar(s);
  s.layers.viewport.style.cursor = name === "pan" ? "grab" : name === "window" ? "ns-resize" : name === "fill" ? "cell" : name === "crosshair" || name === "prompt" ? "crosshair" : "none";
  updateCursor(s);
}

/**
 * @param {Canvas} s
 * @param {number} size
 */
function setBrushSize(s, size) {
  size = Math.max(1, Math.min(200, Math.round(size)));
  s.ui.sizeInput.value = String(size);
  s.ui.sizeLabel.textContent = `${size}px`;
  s.model.set("brush_size", size);
  s.model.save_changes();
  updateCursor(s);
}

/** @param {Canvas} s */
function beginEdit(s) {
  s.before.set(s.map);
}

/**
 * Record the edit since beginEdit for undo and send it to Python (with `extra` fields: the tool,
 * how an accepted proposal was made).
 * @param {Canvas} s
 * @param {Box | null} box
 * @param {string} reason
 * @param {Record<string, unknown>} [extra]
 */
function endEdit(s, box, reason, extra = {}) {
  if (s.history.record(s.before, s.map, s.W, box)) {
    sendMask(s, reason, box, extra);
    edited(s);
  }
  refreshButtons(s);
}

/**
 * After an edit of the shown slice: the other planes' labels in the cache are out of date.
 * @param {Canvas} s
 */
function edited(s) {
  if (!s.volume) return;
  s.volume.edits += 1;
  s.volume.cache.dropLabels(s.volume.plane);
}

/**
 * Continue the stroke to image point `p`.
 * @param {Canvas} s
 * @param {Point} p
 */
function paintTo(s, p) {
  const { model } = s;
  const stroke = /** @type {Stroke} */ (s.stroke);
  const t0 = performance.now();
  const value = s.tool === "eraser" ? 0 : model.get("active_class");
  const allow = preserveRule(model.get("preserve_labels"), value, model.get("active_class"));
  const box = strokeSegment(s.map, s.W, s.H, stroke.last.x, stroke.last.y, p.x, p.y, model.get("brush_size"), value, allow);
  stroke.last = p;
  if (box) {
    growBox(stroke.box, box);
    invalidate(s, box);
  }
  s.strokeWork += performance.now() - t0;
}

/** @param {Canvas} s */
function undo(s) {
  const box = s.history.undo(s.map, s.W);
  if (box) {
    invalidate(s, box);
    sendMask(s, "undo", box);
    edited(s);
  }
  refreshButtons(s);
}

/** @param {Canvas} s */
function redo(s) {
  const box = s.history.redo(s.map, s.W);
  if (box) {
    invalidate(s, box);
    sendMask(s, "redo", box);
    edited(s);
  }
  refreshButtons(s);
}

/** @param {Canvas} s */
function clearAll(s) {
  beginEdit(s);
  s.map.fill(0);
  invalidate(s, whole(s));
  endEdit(s, whole(s), "clear");
}

/** @param {Canvas} s */
function startFromPrediction(s) {
  if (!s.prediction) return;
  beginEdit(s);
  s.map.set(s.prediction);
  invalidate(s, whole(s));
  endEdit(s, whole(s), "prediction");
}

/**
 * A viewport point in image pixels (a volume's planes may have pixels taller than wide).
 * @param {Canvas} s
 * @param {Point} p
 * @returns {Point}
 */
function imagePoint(s, p) {
  const q = toImage(s.view, p.x, p.y);
  return { x: q.x, y: q.y / s.aspect };
}

/**
 * A pointer event's position in viewport pixels.
 * @param {Canvas} s
 * @param {MouseEvent} e
 * @returns {Point}
 */
function local(s, e) {
  const r = s.layers.viewport.getBoundingClientRect();
  return { x: e.clientX - r.left, y: e.clientY - r.top };
}

/**
 * Start a stroke, a fill, a pan or a window drag.
 * @param {Canvas} s
 * @param {PointerEvent} e
 */
function pointerDown(s, e) {
  const { model } = s;
  const { viewport } = s.layers;
  s.root.focus({ preventScroll: true });
  const p = local(s, e);
  s.pointer = p;
  viewport.setPointerCapture(e.pointerId);
  const mode = s.spaceDown || e.button === 1 ? "pan" : s.tool;
  if (mode === "pan") {
    s.drag = { kind: "pan", x: p.x, y: p.y, view: { ...s.view } };
    viewport.style.cursor = "grabbing";
  } else if (mode === "window") {
    s.drag = { kind: "window", x: p.x, y: p.y, win: { ...s.windowState } };
  } else if (s.volume && mode === "crosshair") {
    setCrosshair(s, imagePoint(s, p));
  } else if (s.segmentation && mode === "prompt" && (e.button === 0 || e.button === 2)) {
    const q = imagePoint(s, p);
    s.promptDrag = { start: q, last: q, screen: p, moved: false, negative: e.shiftKey || e.button === 2, scribble: e.altKey ? [clampPoint(s, q)] : null };
  } else if (s.segmentation && mode === "fill") {
    const q = imagePoint(s, p);
    beginEdit(s);
    const box = floodFill(s.map, s.W, s.H, q.x, q.y, model.get("active_class"));
    invalidate(s, box);
    endEdit(s, box, "fill");
  } else if (s.segmentation && (mode === "brush" || mode === "eraser") && e.button === 0) {
    const q = imagePoint(s, p);
    beginEdit(s);
    s.stroke = { last: q, box: emptyBox() };
    paintTo(s, q);
  }
  e.preventDefault();
}

/**
 * Paint along every coalesced event of a stroke, or pan, or drag the window.
 * @param {Canvas} s
 * @param {PointerEvent} e
 */
function pointerMove(s, e) {
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  const pointer = (s.pointer = local(s, e));
  const drag = s.drag;
  if (s.stroke) {
    for (const ev of events.length ? events : [e]) {
      paintTo(s, imagePoint(s, local(s, ev)));
    }
  } else if (s.promptDrag) {
    promptMove(s, pointer, imagePoint(s, pointer));
  } else if (drag && drag.kind === "pan") {
    s.view = { ...drag.view, tx: drag.view.tx + pointer.x - drag.x, ty: drag.view.ty + pointer.y - drag.y };
    applyView(s);
  } else if (drag && drag.kind === "window") {
    const k = Math.max(drag.win.width, 1) / 300;
    s.windowState = { center: drag.win.center - (pointer.y - drag.y) * k, width: Math.max(1e-3, drag.win.width + (pointer.x - drag.x) * k) };
    drawImage(s);
  }
  updateCursor(s);
}

/**
 * End a stroke (it is recorded and sent) or a drag (a window drag sets the trait).
 * @param {Canvas} s
 * @param {PointerEvent} e
 */
function pointerUp(s, e) {
  const { model } = s;
  const { viewport } = s.layers;
  if (s.stroke) {
    const box = s.stroke.box;
    s.stroke = null;
    endEdit(s, boxIsEmpty(box) ? null : box, "stroke", { tool: s.tool });
  }
  if (s.promptDrag) promptUp(s);
  if (s.drag && s.drag.kind === "window") {
    model.set("window", { ...s.windowState });
    model.save_changes();
  }
  s.drag = null;
  if (s.tool === "pan") viewport.style.cursor = "grab";
  if (e && viewport.hasPointerCapture(e.pointerId)) viewport.releasePointerCapture(e.pointerId);
}

/** @param {Canvas} s */
function bindPointer(s) {
  const { viewport } = s.layers;
  viewport.addEventListener("pointerdown", (e) => pointerDown(s, e));
  viewport.addEventListener("pointermove", (e) => pointerMove(s, e));
  viewport.addEventListener("pointerup", (e) => pointerUp(s, e));
  viewport.addEventListener("pointercancel", (e) => pointerUp(s, e));
  viewport.addEventListener("contextmenu", (e) => {
    if (s.tool === "prompt") e.preventDefault(); // a right click is a negative prompt
  });
  viewport.addEventListener("pointerleave", () => {
    s.pointer = null;
    updateCursor(s);
  });
  viewport.addEventListener(
    "wheel",
    (e) => {
      if (s.volume && !(e.ctrlKey || e.metaKey)) {
        scrollSlices(s, e.deltaY); // volumes: the wheel moves through the slices, Ctrl+wheel zooms
      } else {
        const p = local(s, e);
        s.view = zoomAt(s.view, Math.exp(-e.deltaY * 0.0015), p.x, p.y);
        applyView(s);
      }
      e.preventDefault();
    },
    { passive: false },
  );
}

/**
 * The shortcuts: Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y, Space to pan, 1-9 for classes, [ and ] for
 * the size, B E F H W for the tools, + - 0 to zoom.
 * @param {Canvas} s
 * @param {KeyboardEvent} e
 */
function keyDown(s, e) {
  const { model } = s;
  const key = e.key;
  const mod = e.ctrlKey || e.metaKey;
  let handled = true;
  if (mod && key.toLowerCase() === "z") e.shiftKey ? redo(s) : undo(s);
  else if (mod && key.toLowerCase() === "y") redo(s);
  else if (mod) handled = false;
  else if (key === " ") {
    s.spaceDown = true;
    s.layers.viewport.style.cursor = "grab";
    updateCursor(s);
  } else if (/^[1-9]$/.test(key)) {
    const c = model.get("classes")[Number(key) - 1];
    if (c) chooseClass(s, c.index);
  } else if (key === "[") setBrushSize(s, model.get("brush_size") * 0.8 - 1);
  else if (key === "]") setBrushSize(s, model.get("brush_size") * 1.25 + 1);
  else if (key === "b") setTool(s, "brush");
  else if (key === "e") setTool(s, "eraser");
  else if (key === "f") setTool(s, "fill");
  else if (key === "h") setTool(s, "pan");
  else if (key === "w") setTool(s, "window");
  else if (key === "s" && s.segmentation) setTool(s, "prompt");
  else if (key === "Enter" && shownProposal(s)) acceptPrompted(s);
  else if (key === "Escape" && (shownProposal(s) || hasPrompts(s))) rejectPrompted(s);
  else if (s.volume && (key === "PageDown" || key === "ArrowDown")) goTo(s, s.volume.plane, target(s.volume) + 1);
  else if (s.volume && (key === "PageUp" || key === "ArrowUp")) goTo(s, s.volume.plane, target(s.volume) - 1);
  else if (s.volume && key === "c") setTool(s, "crosshair");
  else if (key === "+" || key === "=") zoomCenter(s, 1.25);
  else if (key === "-") zoomCenter(s, 0.8);
  else if (key === "0") fit(s);
  else handled = false;
  if (handled) {
    e.preventDefault();
    e.stopPropagation();
  }
}

/** @param {Canvas} s */
function bindKeys(s) {
  s.root.addEventListener("keydown", (e) => keyDown(s, e));
  s.root.addEventListener("keyup", (e) => {
    if (e.key === " ") {
      s.spaceDown = false;
      setTool(s, s.tool);
      e.stopPropagation();
    }
  });
}

// -- the Smart tool: prompts to an engine, its proposal, accept / reject -------------------

/**
 * The image the shown prompts and proposal belong to: "" for a 2-D image, else the volume slice.
 * @param {Canvas} s
 */
function shownKey(s) {
  return s.volume ? sliceKey(s.volume.plane, s.volume.index) : "";
}

/** @param {Canvas} s */
function shownProposal(s) {
  return s.proposal && s.proposal.key === shownKey(s) && s.proposal.mask.length === s.W * s.H ? s.proposal : null;
}

/** @param {Canvas} s */
function hasPrompts(s) {
  const p = s.prompts;
  return s.promptKey === shownKey(s) && (p.points.length > 0 || p.box !== null || p.scribbles.length > 0);
}

/**
 * An image point inside the image (prompts never lie outside it).
 * @param {Canvas} s
 * @param {Point} q
 * @returns {[number, number]}
 */
function clampPoint(s, q) {
  return [Math.max(0, Math.min(s.W - 1, q.x - 0.5)), Math.max(0, Math.min(s.H - 1, q.y - 0.5))];
}

/**
 * A box or scribble in progress follows the pointer (past a few screen pixels it is no click).
 * @param {Canvas} s
 * @param {Point} screen
 * @param {Point} q
 */
function promptMove(s, screen, q) {
  const d = /** @type {PromptDrag} */ (s.promptDrag);
  if (!d.moved && Math.hypot(screen.x - d.screen.x, screen.y - d.screen.y) > 4) d.moved = true;
  d.last = q;
  if (d.scribble) {
    const p = clampPoint(s, q);
    const end = d.scribble[d.scribble.length - 1];
    if (Math.hypot(p[0] - end[0], p[1] - end[1]) >= 1 && d.scribble.length < 2000) d.scribble.push(p);
  }
  if (d.moved) drawMarks(s);
}

/**
 * The pointer is up: a click, a box or a scribble joins the prompts, and the engine is asked.
 * @param {Canvas} s
 */
function promptUp(s) {
  const d = /** @type {PromptDrag} */ (s.promptDrag);
  s.promptDrag = null;
  const key = shownKey(s);
  if (s.promptKey !== key) {
    s.prompts = noPrompts(); // prompts belong to one image (one slice)
    s.promptKey = key;
  }
  if (d.scribble && d.moved) {
    s.prompts.scribbles.push({ positive: !d.negative, points: d.scribble, width: Math.max(1, Math.min(50, s.model.get("brush_size"))) });
  } else if (d.moved) {
    const [x0, y0] = clampPoint(s, d.start);
    const [x1, y1] = clampPoint(s, d.last);
    s.prompts.box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
  } else {
    const [x, y] = clampPoint(s, d.start);
    s.prompts.points.push([Math.round(x), Math.round(y), !d.negative]);
  }
  askProposal(s);
}

/**
 * Send the prompts (all of them: the engine answers from scratch) to the chosen engine.
 * @param {Canvas} s
 */
function askProposal(s) {
  const seq = ++s.seq;
  s.promptSeq = seq;
  s.promptSent = performance.now();
  /** @type {Record<string, unknown>} */
  const content = { kind: "prompt", seq, engine: s.model.get("engine"), prompts: structuredClone(s.prompts) };
  if (s.volume) Object.assign(content, { plane: s.volume.plane, index: s.volume.index });
  drawMarks(s);
  refreshPromptBar(s);
  enqueue(s, async () => s.model.send(content));
}

/**
 * An engine's proposal (the answer to the latest prompts only; older answers are dropped). A
 * propagated one brings its prompts, which become the slice's, to refine with more clicks.
 * @param {Canvas} s
 * @param {{ seq: number, plane: string | null, index: number | null, region: number[] | null, prompts?: Prompts }} msg
 * @param {DataView[]} buffers
 */
async function receiveProposal(s, msg, buffers) {
  if (msg.seq !== s.promptSeq) return;
  const vol = s.volume;
  const key = vol && msg.plane !== null ? sliceKey(msg.plane, /** @type {number} */ (msg.index)) : "";
  const info = vol && msg.plane !== null ? vol.planes[msg.plane] : null;
  const W = info ? info.width : s.W;
  const H = info ? info.height : s.H;
  const patch = buffers && buffers.length ? (await decodeMask(toUint8(buffers[0]))).map : null;
  if (msg.seq !== s.promptSeq) return; // newer prompts went out while this one decoded
  const placed = placeRegion(W, H, msg.region, patch);
  s.proposal = { mask: placed.mask, box: placed.box, key };
  if (msg.prompts) {
    s.prompts = msg.prompts;
    s.promptKey = key;
  }
  s.promptSeq = 0;
  drawProposal(s);
  drawMarks(s);
  refreshPromptBar(s);
  if (key === shownKey(s)) stats.proposals.push(performance.now() - s.promptSent);
}

/**
 * The proposal layer: a tint and an outline in the selected class's colour.
 * @param {Canvas} s
 */
function drawProposal(s) {
  const { proposalCtx } = s.layers;
  proposalCtx.clearRect(0, 0, s.W, s.H);
  const p = shownProposal(s);
  if (!p || !p.box) return;
  const data = proposalCtx.createImageData(s.W, s.H);
  const active = s.model.get("classes").find((c) => c.index === s.model.get("active_class"));
  paintProposal(p.mask, s.W, s.H, active ? active.color : FALLBACK_COLOR, new Uint32Array(data.data.buffer));
  proposalCtx.putImageData(data, 0, 0);
}

/**
 * The prompts on screen (in viewport pixels, so they keep their size at any zoom): green clicks on
 * the object, red ones off it, the box dashed, scribbles as lines; and the box or scribble being drawn.
 * @param {Canvas} s
 */
function drawMarks(s) {
  const svg = s.layers.marks;
  svg.replaceChildren();
  const { scale, tx, ty } = s.view;
  /** @type {(x: number, y: number) => string} */
  const at = (x, y) => `${(x + 0.5) * scale + tx},${(y + 0.5) * s.aspect * scale + ty}`;
  /** @type {(tag: string, attrs: Record<string, string>) => void} */
  const add = (tag, attrs) => {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    svg.append(el);
  };
  /** @type {(positive: boolean) => string} */
  const color = (positive) => (positive ? "#1e8e3e" : "#d93025");
  /** @type {(box: number[], dashed: boolean) => void} */
  const rect = ([x0, y0, x1, y1], dashed) => {
    const [ax, ay] = at(x0, y0).split(",").map(Number);
    const [bx, by] = at(x1, y1).split(",").map(Number);
    add("rect", { x: String(Math.min(ax, bx)), y: String(Math.min(ay, by)), width: String(Math.abs(bx - ax)), height: String(Math.abs(by - ay)), fill: "none", stroke: "#ffd400", "stroke-width": "1.5", "stroke-dasharray": dashed ? "5 3" : "" });
  };
  if (hasPrompts(s)) {
    const p = s.prompts;
    if (p.box) rect(p.box, true);
    for (const sc of p.scribbles) add("polyline", { points: sc.points.map(([x, y]) => at(x, y)).join(" "), fill: "none", stroke: color(sc.positive), "stroke-width": "2.5", "stroke-linecap": "round", "stroke-linejoin": "round", opacity: "0.9" });
    for (const [x, y, positive] of p.points) {
      const [cx, cy] = at(x, y).split(",");
      add("circle", { cx, cy, r: "5", fill: color(positive), stroke: "#fff", "stroke-width": "1.5", "data-positive": String(positive) });
    }
  }
  const d = s.promptDrag;
  if (d && d.moved) {
    if (d.scribble) add("polyline", { points: d.scribble.map(([x, y]) => at(x, y)).join(" "), fill: "none", stroke: color(!d.negative), "stroke-width": "2.5" });
    else rect([...clampPoint(s, d.start), ...clampPoint(s, d.last)], false);
  }
}

/**
 * Accept the shown proposal: one undoable edit of the selected class (the "preserve other labels"
 * rule applies), sent with how it was made; the prompts are done.
 * @param {Canvas} s
 */
function acceptPrompted(s) {
  const p = shownProposal(s);
  if (!p) return;
  const { model } = s;
  const value = model.get("active_class");
  beginEdit(s);
  const box = acceptProposal(s.map, s.W, p, value, preserveRule(model.get("preserve_labels"), value, value));
  invalidate(s, box);
  endEdit(s, box, "accept", { made: { engine: model.get("engine"), ...promptCounts(s.prompts) } });
  clearPrompts(s);
}

/**
 * Reject the proposal (counted for the label's record) and forget its prompts.
 * @param {Canvas} s
 */
function rejectPrompted(s) {
  if (shownProposal(s) && s.proposal && s.proposal.box) {
    const engine = s.model.get("engine");
    enqueue(s, async () => s.model.send({ kind: "reject_proposal", engine }));
  }
  clearPrompts(s);
}

/** @param {Canvas} s */
function clearPrompts(s) {
  s.prompts = noPrompts();
  s.proposal = null;
  s.promptSeq = 0; // an answer still on its way is dropped
  drawProposal(s);
  drawMarks(s);
  refreshPromptBar(s);
}

/**
 * Volumes: this slice's label of the selected class becomes the prompts of the next (`step` 1) or
 * previous (-1) slice; Python moves there and sends the proposal. A proposal shown is accepted first.
 * @param {Canvas} s
 * @param {1 | -1} step
 */
function propagate(s, step) {
  const vol = s.volume;
  if (!vol) return;
  if (shownProposal(s)) acceptPrompted(s);
  const seq = ++s.seq;
  s.promptSeq = seq;
  s.promptSent = performance.now();
  const content = { kind: "propagate", seq, plane: vol.plane, index: vol.index, step, engine: s.model.get("engine") };
  refreshPromptBar(s);
  enqueue(s, async () => s.model.send(content));
}

/**
 * The engine menu from the `engines` trait (labels as text, never markup).
 * @param {Canvas} s
 */
function fillEngines(s) {
  const { ui, model } = s;
  ui.engineSelect.replaceChildren(...(model.get("engines") || []).map((e) => h("option", { value: e.name }, e.label)));
  ui.engineSelect.value = model.get("engine");
}

/** @param {Canvas} s */
function refreshPromptBar(s) {
  const { ui } = s;
  if (!ui || !ui.acceptButton) return;
  const p = shownProposal(s);
  ui.acceptButton.disabled = !p || !p.box;
  ui.rejectButton.disabled = !p && !hasPrompts(s);
  const smart = s.tool === "prompt";
  for (const el of [ui.acceptButton, ui.rejectButton, ui.promptHint]) el.style.display = smart || p ? "" : "none";
  let hint = "";
  if (s.promptSeq) hint = "Proposing…";
  else if (p && p.box) hint = "Enter accepts, Esc rejects; click again to refine";
  else if (p) hint = "The engine found nothing there: add a click, or draw a box";
  else if (smart) hint = "Click the object (Shift+click: not the object), drag a box, Alt+drag to scribble";
  ui.promptHint.textContent = hint;
  if (s.volume) ui.slices.propagateButton.disabled = Boolean(s.promptSeq);
}

// -- volumes: slices on demand, planes, the crosshair -----------------------------------------

/**
 * Show slice `index` of `plane`: at once when the browser has it, else when it arrives; then
 * fetch its neighbours, so the next slices are there before they are asked for.
 * @param {Canvas} s
 * @param {string} plane
 * @param {number} index
 */
function goTo(s, plane, index) {
  const vol = s.volume;
  if (!vol || !vol.planes[plane]) return;
  const info = vol.planes[plane];
  index = Math.max(0, Math.min(info.depth - 1, Math.round(index)));
  if (plane === vol.plane && index === vol.index && !vol.waiting) return;
  const { model } = s;
  model.set("plane", plane);
  model.set("slice_index", index);
  model.save_changes();
  vol.at[info.axis] = index;
  const key = sliceKey(plane, index);
  const entry = vol.cache.get(key);
  vol.started = { key, t0: performance.now(), cached: Boolean(entry && entry.label) };
  if (entry && entry.label) {
    vol.waiting = null;
    showSlice(s, plane, index, entry);
    prefetchAround(s, plane, index);
  } else {
    vol.waiting = key; // its neighbours are asked for once it is here: nothing else on the wire meanwhile
    request(s, plane, index, false);
    updateSliceBar(s);
  }
}

/**
 * Ask for the slices around `index` that the browser does not have.
 * @param {Canvas} s
 * @param {string} plane
 * @param {number} index
 */
function prefetchAround(s, plane, index) {
  const vol = /** @type {VolumeState} */ (s.volume);
  for (const i of prefetchOrder(index, vol.planes[plane].depth)) {
    const near = vol.cache.entries.get(sliceKey(plane, i));
    if (!near || !near.label) request(s, plane, i, true);
  }
}

/**
 * Switch to `plane` at the slice through the crosshair.
 * @param {Canvas} s
 * @param {string} plane
 */
function showPlane(s, plane) {
  const vol = s.volume;
  if (!vol || !vol.planes[plane]) return;
  goTo(s, plane, pixelOf(vol.planes[plane], vol.at).index);
}

/**
 * Move `delta` wheel units through the slices (a notch of a mouse wheel is one slice).
 * @param {Canvas} s
 * @param {number} delta
 */
function scrollSlices(s, delta) {
  const vol = s.volume;
  if (!vol) return;
  vol.wheel += delta;
  const steps = Math.trunc(vol.wheel / 100) || (Math.abs(vol.wheel) >= 40 ? Math.sign(vol.wheel) : 0);
  if (!steps) return;
  vol.wheel = 0;
  goTo(s, vol.plane, target(vol) + steps);
}

/**
 * The slice being shown, or on its way (keys and the wheel count from there).
 * @param {VolumeState} vol
 */
function target(vol) {
  return vol.waiting ? Number(vol.waiting.split(":")[1]) : vol.index;
}

/**
 * Ask Python for a slice (in order after the strokes before it, so its label has them).
 * @param {Canvas} s
 * @param {string} plane
 * @param {number} index
 * @param {boolean} prefetch
 */
function request(s, plane, index, prefetch) {
  const vol = /** @type {VolumeState} */ (s.volume);
  const key = sliceKey(plane, index);
  if (vol.asked.has(key)) return;
  vol.asked.set(key, vol.edits);
  enqueue(s, async () => s.model.send({ kind: "plane", plane, index, prefetch }));
}

/**
 * A slice from Python: into the cache, and on screen if it is the one shown or awaited.
 * @param {Canvas} s
 * @param {{ plane: string, index: number, seq: number | null, reset_history: boolean, width: number, height: number, channels: number, dtype: string }} msg
 * @param {DataView[]} buffers
 */
async function receiveSlice(s, msg, buffers) {
  const vol = /** @type {VolumeState} */ (s.volume);
  const key = sliceKey(msg.plane, msg.index);
  if (vol.waiting && vol.waiting !== key && msg.seq !== null && msg.seq !== undefined && !msg.reset_history) {
    vol.deferred.push([msg, buffers]); // a prefetched slice waits: the one on its way to the screen decodes first
    return;
  }
  const meta = { width: msg.width, height: msg.height, channels: msg.channels, dtype: msg.dtype };
  const values = imageValues(await inflate(toUint8(buffers[0])), meta.dtype);
  const label = (await decodeMask(toUint8(buffers[1]))).map;
  const prediction = buffers.length > 2 ? (await decodeMask(toUint8(buffers[2]))).map : null;
  const askedAt = vol.asked.get(key);
  vol.asked.delete(key);
  const pushed = msg.seq === null || msg.seq === undefined || msg.reset_history; // Python's own news: it is the truth
  const current = key === sliceKey(vol.plane, vol.index);
  const shown = current && !vol.waiting;
  if (msg.reset_history) vol.histories.clear();
  // Edited since it was asked for: the shown slice on screen is newer, and another plane's label
  // may lack the edit (a slice of the shown plane is untouched by edits of the shown slice).
  if (!pushed && askedAt !== undefined && askedAt !== vol.edits && (current || msg.plane !== vol.plane)) {
    if (shown) return;
    vol.cache.set(key, { values, meta, label: null, prediction });
    if (vol.waiting === key) request(s, msg.plane, msg.index, false); // asked again, after the edit
    return;
  }
  vol.cache.set(key, { values, meta, label, prediction });
  if (vol.waiting === key || shown || (msg.reset_history && key === sliceKey(vol.plane, vol.index))) {
    const awaited = vol.waiting === key || msg.reset_history;
    vol.waiting = null;
    showSlice(s, msg.plane, msg.index, /** @type {Slice} */ (vol.cache.get(key)));
    if (awaited) prefetchAround(s, msg.plane, msg.index);
  }
  if (!vol.waiting && vol.deferred.length) {
    for (const [m, b] of vol.deferred.splice(0)) receiveSlice(s, m, b);
  }
}

/**
 * Put a slice on screen: its image, label and prediction, its own undo history.
 * @param {Canvas} s
 * @param {string} plane
 * @param {number} index
 * @param {Slice} entry
 */
function showSlice(s, plane, index, entry) {
  const vol = /** @type {VolumeState} */ (s.volume);
  const current = vol.cache.entries.get(sliceKey(vol.plane, vol.index));
  if (current && current.label && current.label.length === s.map.length) current.label = s.map.slice(); // keep edits
  const info = vol.planes[plane];
  const newPlane = plane !== vol.plane || entry.meta.width !== s.W || entry.meta.height !== s.H;
  vol.plane = plane;
  vol.index = index;
  vol.at[info.axis] = index;
  resize(s, entry.meta.width, entry.meta.height, info.row_mm / info.col_mm);
  s.values = entry.values;
  s.channels = entry.meta.channels;
  if (entry.label) s.map.set(entry.label);
  s.prediction = entry.prediction;
  const key = sliceKey(plane, index);
  if (!vol.histories.has(key)) vol.histories.set(key, new UndoStack(50));
  s.history = /** @type {UndoStack} */ (vol.histories.get(key));
  drawImage(s);
  invalidate(s, whole(s));
  drawPrediction(s);
  drawProposal(s);
  drawMarks(s);
  if (newPlane) fit(s);
  updateSliceBar(s);
  drawCrosshair(s);
  refreshButtons(s);
  if (vol.started && vol.started.key === key) {
    stats.slices.push({ ms: performance.now() - vol.started.t0, cached: vol.started.cached });
    vol.started = null;
  }
}

/**
 * The slice bar: plane buttons, the slider and where the slice lies.
 * @param {Canvas} s
 */
function updateSliceBar(s) {
  const vol = s.volume;
  if (!vol) return;
  const { slices } = s.ui;
  const info = vol.planes[vol.plane];
  const shown = target(vol);
  for (const [name, button] of Object.entries(slices.planeButtons)) button.setAttribute("aria-pressed", String(name === vol.plane));
  slices.slider.max = String(info.depth - 1);
  slices.slider.value = String(shown);
  const mm = info.origin_mm + shown * info.step_mm;
  const side = { axial: ["S", "I"], coronal: ["A", "P"], sagittal: ["R", "L"] }[vol.plane] || ["", ""];
  slices.where.textContent = `Slice ${shown + 1} / ${info.depth} · ${mm >= 0 ? side[0] : side[1]} ${Math.abs(mm).toFixed(1)} mm${vol.waiting ? " · loading" : ""}`;
  drawTicks(s);
}

/**
 * Ticks under the slider at the slices that hold a class other than the background.
 * @param {Canvas} s
 */
function drawTicks(s) {
  const vol = s.volume;
  if (!vol) return;
  const canvas = s.ui.slices.ticks;
  const width = canvas.clientWidth || 400;
  if (canvas.width !== width) canvas.width = width;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#1a73e8";
  const depth = vol.planes[vol.plane].depth;
  for (const i of s.model.get("labeled_slices")) {
    const x = depth > 1 ? (i / (depth - 1)) * (canvas.width - 2) : 0;
    ctx.fillRect(Math.round(x), 0, 2, canvas.height);
  }
}

/**
 * The crosshair: the two other planes' slices through the shown one, as lines.
 * @param {Canvas} s
 */
function drawCrosshair(s) {
  const vol = s.volume;
  const { cross, crossRow, crossCol } = s.layers;
  if (!vol) return;
  const p = pixelOf(vol.planes[vol.plane], vol.at);
  const thick = 1 / s.view.scale;
  cross.style.display = "block";
  Object.assign(crossRow.style, { left: "0px", width: `${s.W}px`, top: `${(p.y + 0.5) * s.aspect - thick / 2}px`, height: `${thick}px` });
  Object.assign(crossCol.style, { top: "0px", height: `${s.H * s.aspect}px`, left: `${p.x + 0.5 - thick / 2}px`, width: `${thick}px` });
}

/**
 * Move the crosshair to an image point of the shown slice (the other planes follow it).
 * @param {Canvas} s
 * @param {Point} q
 */
function setCrosshair(s, q) {
  const vol = /** @type {VolumeState} */ (s.volume);
  const x = Math.max(0, Math.min(s.W - 1, Math.floor(q.x)));
  const y = Math.max(0, Math.min(s.H - 1, Math.floor(q.y)));
  vol.at = voxelOf(vol.planes[vol.plane], vol.index, x, y);
  s.model.set("crosshair", [...vol.at]);
  s.model.save_changes();
  drawCrosshair(s);
}

/**
 * Copy the previous slice, interpolate, or undo one of those: done in Python, which sends the slices back.
 * @param {Canvas} s
 * @param {"copy_previous" | "interpolate" | "undo_operation"} kind
 */
function operation(s, kind) {
  const vol = s.volume;
  if (!vol) return;
  const { plane, index } = vol;
  enqueue(s, async () => s.model.send({ kind, plane, index }));
}

// -- wire: the queue of mask messages, acks, trait listeners --------------------------------

// Messages leave in the order the edits happened, even though compressing is async:
// a later small stroke must never overtake an earlier big one.

/**
 * @param {Canvas} s
 * @param {() => Promise<void>} task
 */
function enqueue(s, task) {
  s.outbox = s.outbox.then(task).catch((e) => (s.ui.errorBox.textContent = `Could not send the label: ${e}`));
  return s.outbox;
}

/**
 * Send the label map after an edit. Only the changed box travels (the whole map when the
 * box is most of it).
 * @param {Canvas} s
 * @param {string} reason
 * @param {Box | null} [box]
 * @param {Record<string, unknown>} [extra]
 */
function sendMask(s, reason, box = null, extra = {}) {
  const { W, H } = s;
  const mySeq = ++s.seq;
  const t0 = performance.now();
  /** @type {{ kind: "mask", seq: number, reason: string, region?: number[], plane?: string, index?: number }} */
  const content = { ...extra, kind: "mask", seq: mySeq, reason };
  if (s.volume) Object.assign(content, { plane: s.volume.plane, index: s.volume.index }); // the slice it belongs to
  let bytes; // a copy of the state at this edit, whatever comes next
  let rows = H;
  let cols = W;
  if (box && !boxIsEmpty(box) && (box.x1 - box.x0 + 1) * (box.y1 - box.y0 + 1) < (W * H) / 2) {
    cols = box.x1 - box.x0 + 1;
    rows = box.y1 - box.y0 + 1;
    content.region = [box.x0, box.y0, cols, rows];
    bytes = copyBox(s.map, W, box);
  } else {
    bytes = s.map.slice();
  }
  return enqueue(s, async () => {
    const wire = await encodeMask(bytes, rows, cols);
    stats.wireBytes.push(wire.length);
    s.pending.set(mySeq, t0);
    s.model.send(content, undefined, [/** @type {ArrayBuffer} */ (wire.buffer)]);
  });
}

/**
 * Save a draft, submit or delete (once: the buttons wait until Python clears `busy`).
 * @param {Canvas} s
 * @param {"save" | "submit" | "delete"} kind
 */
function save(s, kind) {
  const { model } = s;
  if (model.get("busy")) return; // a double click cannot double-submit
  model.set("busy", true);
  model.save_changes();
  refreshButtons(s);
  /** @type {{ kind: string, seq: number, value?: number[] }} */
  const content = { kind, seq: ++s.seq };
  if (!s.segmentation) content.value = model.get("value");
  const bytes = s.segmentation && kind !== "delete" && !s.volume ? s.map.slice() : null; // a volume's is current in Python
  return enqueue(s, async () => {
    const buffers = bytes ? [/** @type {ArrayBuffer} */ ((await encodeMask(bytes, s.H, s.W)).buffer)] : [];
    model.send(content, undefined, buffers);
  });
}

/**
 * Python's messages: an ack of a mask, or a mask (the label or the prediction).
 * @param {Canvas} s
 * @param {{ kind: string, seq?: number, target?: string, reset_history?: boolean, plane?: string, index?: number }} msg
 * @param {DataView[]} buffers
 */
function onMessage(s, msg, buffers) {
  if (msg.kind === "ack" && /** @type {any} */ (msg).error && msg.seq === s.promptSeq) {
    s.promptSeq = 0; // the engine failed (the error is shown): nothing is awaited any more
    refreshPromptBar(s);
  }
  if (msg.kind === "proposal") {
    receiveProposal(s, /** @type {any} */ (msg), buffers);
  } else if (s.volume && msg.kind === "plane") {
    receiveSlice(s, /** @type {any} */ (msg), buffers);
  } else if (s.volume && msg.kind === "labels_changed") {
    s.volume.cache.dropLabels(); // Python changed many slices; it sends the shown one next
    s.volume.histories.clear();
    s.history = new UndoStack(50);
    refreshButtons(s);
  } else if (s.volume && msg.kind === "go") {
    goTo(s, /** @type {string} */ (msg.plane), /** @type {number} */ (msg.index));
  } else if (s.volume && msg.kind === "ack" && /** @type {any} */ (msg).error && s.volume.waiting) {
    const vol = s.volume; // Python could not answer: stop waiting (the error is shown), take what came meanwhile
    vol.asked.delete(/** @type {string} */ (vol.waiting));
    vol.waiting = null;
    updateSliceBar(s);
    for (const [m, b] of vol.deferred.splice(0)) receiveSlice(s, m, b);
  } else if (msg.kind === "ack") {
    const t0 = s.pending.get(/** @type {number} */ (msg.seq));
    if (t0 !== undefined) {
      stats.roundTrips.push(performance.now() - t0);
      s.pending.delete(/** @type {number} */ (msg.seq));
    }
  } else if (msg.kind === "mask" && buffers && buffers.length) {
    decodeMask(toUint8(buffers[0])).then(({ map: incoming }) => {
      if (incoming.length !== s.map.length) return;
      if (msg.target === "prediction") {
        s.prediction = incoming;
        drawPrediction(s);
      } else {
        s.map.set(incoming);
        if (msg.reset_history) {
          s.history.done = [];
          s.history.undone = [];
        }
        invalidate(s, whole(s));
      }
      refreshButtons(s);
    });
  }
}

/**
 * Listen to Python's messages, then tell it the canvas is ready (it answers with the masks).
 * @param {Canvas} s
 */
function listen(s) {
  /** @type {(msg: any, buffers: DataView[]) => void} */
  const handler = (msg, buffers) => onMessage(s, msg, buffers);
  s.model.on("msg:custom", handler);
  s.disposers.push(() => s.model.off("msg:custom", handler));
  s.model.send({ kind: "ready" });
}

/**
 * Follow the traits Python (or another view) may change.
 * @param {Canvas} s
 */
function followTraits(s) {
  const { model, ui } = s;
  /** @type {Record<string, () => void>} */
  const onChange = {
    "change:opacity": () => {
      s.table = colorTable(model.get("classes"), model.get("opacity"));
      ui.opacityInput.value = String(Math.round(model.get("opacity") * 100));
      invalidate(s, whole(s));
    },
    "change:classes": () => {
      s.table = colorTable(model.get("classes"), model.get("opacity"));
      renderPalette(s);
      invalidate(s, whole(s));
    },
    "change:value": () => renderPalette(s),
    "change:prediction_scores": () => renderPalette(s),
    "change:predicted": () => renderPalette(s),
    "change:show_prediction": () => {
      ui.predictionBox.checked = model.get("show_prediction");
      drawPrediction(s);
    },
    "change:invert": () => drawImage(s),
    "change:busy": () => refreshButtons(s),
    "change:bound": () => refreshButtons(s),
    "change:status": () => (ui.status.textContent = model.get("status")),
    "change:error": () => (ui.errorBox.textContent = model.get("error")),
    "change:brush_size": () => setBrushSize(s, model.get("brush_size")),
    "change:tool": () => model.get("tool") !== s.tool && setTool(s, model.get("tool")),
    "change:labeled_slices": () => drawTicks(s),
    "change:engines": () => fillEngines(s),
    "change:engine": () => (ui.engineSelect.value = model.get("engine")),
    "change:active_class": () => {
      renderPalette(s);
      drawProposal(s);
    },
    "change:last_operation": () => refreshButtons(s),
    "change:crosshair": () => {
      const vol = s.volume;
      if (!vol) return;
      const at = [...model.get("crosshair")];
      at[vol.planes[vol.plane].axis] = target(vol); // an echo of an earlier slice never moves the shown one
      vol.at = at;
      drawCrosshair(s);
    },
  };
  for (const [event, fn] of Object.entries(onChange)) {
    model.on(event, fn);
    s.disposers.push(() => model.off(event, fn));
  }
}

export default { render };
