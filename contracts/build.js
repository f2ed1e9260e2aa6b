#!/usr/bin/env node
// Build the Cryptlet Fabric contracts with the pinned solc-js (package.json / package-lock.json).
//
//   node contracts/build.js [--evm-version prague|cancun|shanghai|...] [--out DIR] [--include DIR]...
//
// Compiles every *.sol under contracts/ (not build/) in one standard-JSON run and writes, per
// contract, DIR/<Name>.json = {contractName, sourceName, abi, bytecode, deployedBytecode} plus
// DIR/build-info.json = {solcVersion, settings, sources: {file: keccak256-free sha256}}. DIR
// defaults to contracts/build/ (git-ignored: artifacts are always produced by this script, never
// edited or committed). evmVersion is explicit: `prague` (default) for py-evm/eth-tester,
// `shanghai` or lower for ganache. `--include DIR` adds DIR's *.sol files (e.g. a contract and the
// header `cryptlet header` generated for it) as top-level sources that may import these contracts
// ("./MessageQueue.sol"). Exits 1 on any compiler error and prints warnings.
"use strict";
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const solc = require("solc");

const HERE = __dirname;
const OPTIMIZER = { enabled: true, runs: 1000000 };

function parseArgs(argv) {
  const args = { evmVersion: process.env.CRYPTLET_EVM_VERSION || "prague", out: path.join(HERE, "build"), include: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--evm-version") args.evmVersion = argv[++i];
    else if (argv[i] === "--out") args.out = path.resolve(argv[++i]);
    else if (argv[i] === "--include") args.include.push(path.resolve(argv[++i]));
    else { console.error(`unknown argument ${argv[i]}`); process.exit(2); }
  }
  return args;
}

function sources(include) {
  const found = {};
  (function walk(dir) {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== "build" && entry.name !== "node_modules") walk(full);
      } else if (entry.name.endsWith(".sol")) {
        found[path.relative(HERE, full).split(path.sep).join("/")] = { content: fs.readFileSync(full, "utf8") };
      }
    }
  })(HERE);
  for (const dir of include) {
    for (const name of fs.readdirSync(dir).filter((n) => n.endsWith(".sol")).sort()) {
      if (found[name]) { console.error(`--include ${dir}: ${name} clashes with a contract of the same name`); process.exit(2); }
      found[name] = { content: fs.readFileSync(path.join(dir, name), "utf8") };
    }
  }
  return found;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const settings = {
    evmVersion: args.evmVersion,
    optimizer: OPTIMIZER,
    viaIR: false,
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  };
  const input = { language: "Solidity", sources: sources(args.include), settings };
  const output = JSON.parse(solc.compile(JSON.stringify(input), {
    import: (p) => (fs.existsSync(path.join(HERE, p)) ? { contents: fs.readFileSync(path.join(HERE, p), "utf8") }
      : { error: `not found: ${p}` }),
  }));
  let failed = false;
  for (const err of output.errors || []) {
    console.error(err.formattedMessage || err.message);
    if (err.severity === "error") failed = true;
  }
  if (failed) process.exit(1);
  fs.mkdirSync(args.out, { recursive: true });
  let count = 0;
  for (const [sourceName, contracts] of Object.entries(output.contracts || {})) {
    for (const [contractName, c] of Object.entries(contracts)) {
      if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts
      fs.writeFileSync(path.join(args.out, `${contractName}.json`), JSON.stringify({
        contractName, sourceName, abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object, deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      }, null, 1) + "\n");
      count++;
    }
  }
  const info = {
    solcVersion: solc.version(), settings: { evmVersion: settings.evmVersion, optimizer: OPTIMIZER,
      viaIR: settings.viaIR, metadata: settings.metadata },
    sources: Object.fromEntries(Object.entries(input.sources).map(([f, s]) =>
      [f, crypto.createHash("sha256").update(s.content).digest("hex")])),
  };
  fs.writeFileSync(path.join(args.out, "build-info.json"), JSON.stringify(info, null, 1) + "\n");
  console.log(`built ${count} contracts with solc ${solc.version()} (evmVersion ${settings.evmVersion}, ` +
    `optimizer runs ${OPTIMIZER.runs}) into ${path.relative(process.cwd(), args.out) || "."}`);
}

main();
