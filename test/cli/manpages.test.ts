import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, REPO_ROOT } from '../helpers/cli.js';

/** Options `--help` lists for a command (long names, as the user types them). */
function helpOptions(help: string): string[] {
  return [...new Set([...help.matchAll(/^\s+(?:-\w, )?(--[a-z][a-z-]*)/gm)].map((m) => m[1]!))];
}

/** roff escapes `-` as `\-`; compare on the plain text. */
const manText = (name: string) => readFileSync(join(REPO_ROOT, 'man', `${name}.1`), 'utf8').replace(/\\-/g, '-').replace(/\\f[BIRP]/g, '');

for (const command of ['load', 'digest', 'push', 'pull', 'verify']) {
  test(`man page of ${command} documents every option --help lists`, async () => {
    const r = await runCli([command, '--help']);
    assert.equal(r.code, 0, r.stderr);
    const options = helpOptions(r.stdout);
    assert.ok(options.length > 5, `found options in --help: ${options.join(' ')}`);
    const own = manText(`tarpush-${command}`);
    const global = manText('tarpush');
    for (const option of options) {
      const documented = own.includes(option) || global.includes(option) || (option === '--cache' && global.includes('--no-cache'));
      assert.ok(documented, `${option} (in tarpush ${command} --help) is missing from man/tarpush-${command}.1 and man/tarpush.1`);
    }
  });
}

test('the main man page lists every command and every exit code the README documents', async () => {
  const main = manText('tarpush');
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  for (const command of ['load', 'digest', 'push', 'pull', 'verify']) assert.ok(main.includes(`tarpush-${command}`), command);
  const codes = [...readme.matchAll(/^\| (\d+) \|/gm)].map((m) => m[1]!);
  assert.deepEqual(codes, ['0', '1', '2', '3', '4', '5', '6', '70', '130']);
  for (const code of codes) assert.match(main, new RegExp(`^\\.B ${code}$`, 'm'), `exit code ${code} in man/tarpush.1`);
});
