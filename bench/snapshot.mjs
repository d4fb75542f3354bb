// The Node half of the memory-snapshot benchmark (bench/snapshot.py runs it; see its docstring).
//
//   node bench/snapshot.mjs make OUT [ZIP]          loadPyodide({_makeSnapshot}) (+ unpack ZIP, import the
//                                                   app's entry module), write the snapshot to OUT
//   node bench/snapshot.mjs cold ZIP CHECK          loadPyodide(), unpack ZIP, import the entry module,
//                                                   run the Python file CHECK
//   node bench/snapshot.mjs restore SNAP CHECK [ZIP]  loadPyodide({_loadSnapshot: SNAP}) (+ unpack ZIP
//                                                   and import the entry module), run CHECK
//   node bench/snapshot.mjs compress FILE [--brotli-quality N]   gzip and brotli sizes of FILE
//
// Each prints one line of JSON on stdout: the phases' times in ms (performance.now(), from before
// pyodide.mjs is imported) and CHECK's result. Pyodide is the pinned npm package in
// web/node_modules/pyodide, the same build as web/vendor/pyodide; nothing is fetched.

import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..");
const ENTRY = "import signalguard.browser.main";

const bytes = (file) => new Uint8Array(fs.readFileSync(file));

async function pyodideModule() {
  return import(path.join(REPO, "web", "node_modules", "pyodide", "pyodide.mjs"));
}

function app(pyodide, zip, t) {
  pyodide.unpackArchive(bytes(zip), "zip", { extractDir: "." });
  t.unpacked = performance.now();
  pyodide.runPython(ENTRY);
  t.imported = performance.now();
}

function check(pyodide, file) {
  return JSON.parse(pyodide.runPython(fs.readFileSync(file, "utf8")));
}

const modes = {
  async make([out, zip]) {
    const t = { start: performance.now() };
    const { loadPyodide } = await pyodideModule();
    const pyodide = await loadPyodide({ _makeSnapshot: true });
    t.loaded = performance.now();
    if (zip) app(pyodide, zip, t);
    const before = performance.now();
    const snapshot = pyodide.makeMemorySnapshot();
    t.snapshot_ms = performance.now() - before;
    fs.writeFileSync(out, snapshot);
    return { ...t, bytes: snapshot.length };
  },
  async cold([zip, checkFile]) {
    const t = { start: performance.now() };
    const { loadPyodide } = await pyodideModule();
    const pyodide = await loadPyodide();
    t.loaded = performance.now();
    app(pyodide, zip, t);
    return { ...t, check: check(pyodide, checkFile) };
  },
  async restore([snap, checkFile, zip]) {
    const t = { start: performance.now() };
    const { loadPyodide } = await pyodideModule();
    const pyodide = await loadPyodide({ _loadSnapshot: bytes(snap) });
    t.loaded = performance.now();
    if (zip) app(pyodide, zip, t);
    return { ...t, check: check(pyodide, checkFile) };
  },
  async compress([file, flag, quality]) {
    const data = fs.readFileSync(file);
    const q = flag === "--brotli-quality" ? Number(quality) : 11;
    const out = { raw: data.length, brotli_quality: q };
    for (const level of [6, 9]) out[`gzip${level}`] = zlib.gzipSync(data, { level }).length;
    const t = performance.now();
    out.brotli = zlib.brotliCompressSync(data, {
      params: {
        [zlib.constants.BROTLI_PARAM_QUALITY]: q,
        [zlib.constants.BROTLI_PARAM_LGWIN]: 24,
        [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
      },
    }).length;
    out.brotli_ms = performance.now() - t;
    return out;
  },
};

const [mode, ...args] = process.argv.slice(2);
if (!(mode in modes)) {
  console.error("usage: snapshot.mjs make OUT [ZIP] | cold ZIP CHECK | restore SNAP CHECK [ZIP] | compress FILE");
  process.exit(2);
}
const result = await modes[mode](args);
process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
