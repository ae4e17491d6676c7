#!/usr/bin/env node
// Standard-JSON compile through solc-js (npm `solc`) with a file-system import callback.
// Called by ./solc-js.sh as: node solc-js.cjs INPUT_FILE [--base-path DIR] [--allow-paths A,B] ...
// forge inlines most sources, but relative imports inside libraries (e.g. OpenZeppelin's
// "./TransientSlot.sol") reach the callback; they are read from disk, only inside the allowed paths.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require(path.join(__dirname, '..', 'node_modules', 'solc'));

const args = process.argv.slice(2);
const inputFile = args[0];
let basePath = process.cwd();
let allowed = [basePath];
const includePaths = [];
for (let i = 1; i < args.length; i++) {
  if (args[i] === '--base-path') basePath = path.resolve(args[++i]);
  else if (args[i] === '--allow-paths') allowed = allowed.concat(args[++i].split(',').map((p) => path.resolve(p)));
  else if (args[i] === '--include-path') includePaths.push(path.resolve(args[++i]));
}
allowed.push(basePath, ...includePaths);

function findImports(importPath) {
  for (const root of [basePath, ...includePaths]) {
    const full = path.resolve(root, importPath);
    if (!allowed.some((dir) => full === dir || full.startsWith(dir + path.sep))) continue;
    if (fs.existsSync(full)) return { contents: fs.readFileSync(full, 'utf8') };
  }
  return { error: `File not found inside the allowed paths: ${importPath}` };
}

const input = fs.readFileSync(inputFile, 'utf8');
process.stdout.write(solc.compile(input, { import: findImports }));
