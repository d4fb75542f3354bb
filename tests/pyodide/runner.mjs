// Run Python inside real Pyodide under Node, against this repository's files.
//
//   node tests/pyodide/runner.mjs pytest [PYTEST ARGS...]     run pytest, exit with its exit code
//   node tests/pyodide/runner.mjs run CODE                    run a snippet; print its last expression as JSON
//   node tests/pyodide/runner.mjs call MODULE:FUNC [JSON_ARGS]  call FUNC(*JSON_ARGS); print the result as JSON
//
// Pyodide comes from web/node_modules/pyodide (the pinned npm package). The repository is mounted
// read-only at /repo (NODEFS), and /repo/src plus build/pyodide-site (made by prepare.py: pytest,
// hypothesis) go first on sys.path. The working directory is /repo, so paths are relative to the
// repository root; absolute host paths inside the repository are translated. Nothing is fetched from
// the network: no loadPackage, no micropip.
//
// In `run` and `call` modes, whatever the Python code prints goes to stderr, so stdout holds exactly
// one line: the JSON result. Exit codes: pytest's own in `pytest` mode; 0 or 1 otherwise; 2 for
// usage errors.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");
const SITE = path.join(REPO, "build", "pyodide-site");
const MOUNT = "/repo";

const USAGE = `usage: runner.mjs pytest [ARGS...] | run CODE | call MODULE:FUNC [JSON_ARGS]`;

// NODEFS has no read-only option, so the mutating calls it makes on the host are refused for paths
// inside the repository (the Python side sees OSError EROFS). Writes through a file descriptor need
// no guard: descriptors on repository files can only have been opened read-only.
function makeReadOnly(root) {
  const inside = (p) => typeof p === "string" && (p === root || p.startsWith(root + path.sep));
  const refuse = (op, p) => {
    const error = new Error(`EROFS: read-only file system, ${op} '${p}'`);
    error.code = "EROFS";
    throw error;
  };
  for (const op of ["chmodSync", "mkdirSync", "rmdirSync", "truncateSync", "unlinkSync", "utimesSync",
    "writeFileSync", "renameSync", "symlinkSync"]) {
    const original = fs[op];
    // rename and symlink name the new path second.
    fs[op] = (p, ...rest) => (inside(p) || inside(rest[0]) ? refuse(op, p) : original(p, ...rest));
  }
  const { O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND } = fs.constants;
  const writing = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;
  const open = fs.openSync;
  fs.openSync = (p, flags = "r", mode) => {
    const writes = typeof flags === "number" ? flags & writing : /[wa+]/.test(flags);
    return inside(p) && writes ? refuse("open", p) : open(p, flags, mode);
  };
}

// Pyodide hands over views into wasm memory that it reuses: copy before Node queues the write.
const writer = (stream) => ({
  isatty: false,
  write: (buffer) => {
    stream.write(Buffer.from(buffer));
    return buffer.length;
  },
});

function toRepoPath(arg) {
  return path.isAbsolute(arg) && (arg === REPO || arg.startsWith(REPO + path.sep))
    ? MOUNT + arg.slice(REPO.length)
    : arg;
}

// The Python half: set the interpreter up, then dispatch on the mode.
const BOOT = `
import sys
sys.dont_write_bytecode = True  # the mount is read-only: do not even try
sys.path[:0] = [f"{MOUNT}/src", SITE]
import os
os.chdir(MOUNT)
`;

const PYTEST = `
import pytest

class _Pyodide:
    """Accept the repository's pytest settings that belong to CPython-only plugins."""

    @staticmethod
    def pytest_addoption(parser):
        # pytest-timeout needs threads or SIGALRM, which Pyodide lacks; the caller of this runner
        # bounds the whole run instead.
        parser.addini("timeout", "ignored under Pyodide")

    @staticmethod
    def pytest_runtest_logstart(nodeid, location):
        started_test(nodeid)  # so that a crash of the interpreter can name the test

# No cache: the repository is read-only, and a cache would let one interpreter's failures reorder the
# other's runs.
exit_code = int(pytest.main(["-p", "no:cacheprovider", *ARGS], plugins=[_Pyodide()]))
`;

const JSON_RESULT = `
import contextlib, importlib, json
from pyodide.code import eval_code

with contextlib.redirect_stdout(sys.stderr):
    if MODE == "run":
        result = eval_code(ARGS[0], {"__name__": "__main__"})
    else:
        module, _, name = ARGS[0].partition(":")
        result = getattr(importlib.import_module(module), name)(*json.loads(ARGS[1] if len(ARGS) > 1 else "[]"))
print(json.dumps(result, sort_keys=True, allow_nan=False))
exit_code = 0
`;

// A fatal Pyodide error (a JavaScript stack overflow, say) kills the interpreter and rejects a promise
// nobody awaits; report which test was running rather than a page of wasm frames.
let currentTest = null;
function crashed(error) {
  const where = currentTest ? ` while running ${currentTest}` : "";
  process.stderr.write(`\nrunner: Pyodide crashed${where}: ${error?.message ?? error}\n`);
  process.exit(1);
}
process.on("uncaughtException", crashed);
process.on("unhandledRejection", crashed);

async function main(argv) {
  const [mode, ...args] = argv;
  if (!["pytest", "run", "call"].includes(mode) || (mode !== "pytest" && args.length < 1)) {
    console.error(USAGE);
    return 2;
  }
  if (!fs.existsSync(path.join(SITE, "pytest"))) {
    console.error(`runner: ${SITE} is missing; run tests/pyodide/prepare.py first`);
    return 2;
  }
  makeReadOnly(REPO);
  const { loadPyodide } = await import(path.join(REPO, "web", "node_modules", "pyodide", "pyodide.mjs"));
  const pyodide = await loadPyodide({
    env: {
      HOME: "/home/pyodide",
      // hypothesis keeps its example database under the working directory by default (read-only).
      HYPOTHESIS_STORAGE_DIRECTORY: "/tmp/hypothesis",
    },
  });
  pyodide.setStdout(writer(process.stdout));
  pyodide.setStderr(writer(process.stderr));
  pyodide.mountNodeFS(MOUNT, REPO);
  const globals = pyodide.toPy({
    MOUNT,
    SITE: MOUNT + SITE.slice(REPO.length),
    MODE: mode,
    ARGS: mode === "pytest" ? args.map(toRepoPath) : args,
  });
  globals.set("started_test", (nodeid) => {
    currentTest = nodeid;
  });
  try {
    pyodide.runPython(BOOT, { globals });
    await pyodide.runPythonAsync(mode === "pytest" ? PYTEST : JSON_RESULT, { globals });
    return globals.get("exit_code");
  } catch (error) {
    // A Python exception: its traceback is the message.
    process.stderr.write(`${error.message ?? error}\n`);
    return 1;
  }
}

const code = await main(process.argv.slice(2));
// Let stdout drain (it may be a pipe) before leaving.
process.stdout.write("", () => process.exit(code));
