// Compile Solidity sources with the pinned solc-js (package.json) for the header tests.
// stdin: {"sources": {"<file>.sol": "<source text>", ...}}; stdout: solc's standard JSON output.
"use strict";
const solc = require("solc");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const { sources } = JSON.parse(input);
  const standard = {
    language: "Solidity",
    sources: Object.fromEntries(Object.entries(sources).map(([file, content]) => [file, { content }])),
    settings: {
      evmVersion: "shanghai",
      optimizer: { enabled: false },
      outputSelection: { "*": { "*": ["abi"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(standard)));
  output.solcVersion = solc.version();
  process.stdout.write(JSON.stringify(output));
});
