// Compile the page's Python to the bytecode of the page's own interpreter (Pyodide, from the pinned npm
// package), so that the page imports .pyc files instead of compiling every module at start.
//
//   node pyc.mjs PYODIDE_DIR    reads a JSON object {name: source text} on stdin; prints one JSON line
//                               {"cache_tag": "cpython-314", "pyc": {name: base64}}
//
// The .pyc files are "unchecked hash-based" (PEP 552): the interpreter uses them without looking at the
// source's modification time, which the zip does not carry faithfully. They are built from exactly the
// sources they ship beside, in the same zip, so they cannot go stale. Used by assets.py.

import path from "node:path";
import { pathToFileURL } from "node:url";

const [dir] = process.argv.slice(2);
if (!dir) {
  console.error("usage: node pyc.mjs PYODIDE_DIR < sources.json");
  process.exit(2);
}
let input = "";
for await (const chunk of process.stdin) input += chunk;

const { loadPyodide } = await import(pathToFileURL(path.join(dir, "pyodide.mjs")).href);
// Quiet: stdout carries exactly the one JSON line.
const pyodide = await loadPyodide({ indexURL: dir, stdout: () => {}, stderr: (s) => console.error(s) });
pyodide.globals.set("SOURCES", input);
const out = pyodide.runPython(`
import base64, importlib.util, json, sys
from importlib._bootstrap_external import _code_to_hash_pyc

out = {}
for name, text in json.loads(SOURCES).items():
    data = text.encode()
    code = compile(data, name, "exec", dont_inherit=True)
    pyc = _code_to_hash_pyc(code, importlib.util.source_hash(data), False)
    out[name] = base64.b64encode(pyc).decode("ascii")
json.dumps({"cache_tag": sys.implementation.cache_tag, "pyc": out})
`);
process.stdout.write(out + "\n");
