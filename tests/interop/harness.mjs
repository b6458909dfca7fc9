// SPDX-License-Identifier: Apache-2.0
// Starts a real faultline server on ephemeral ports with a temporary database.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function startServer(extraArgs = []) {
  const bin = process.env.FAULTLINE_BIN;
  if (!bin || !existsSync(bin)) throw new Error(`FAULTLINE_BIN not set or missing: ${bin}`);
  const dir = mkdtempSync(join(tmpdir(), 'fl-interop-'));
  const portFile = join(dir, 'ports.json');
  const args = ['serve', '--otlp-grpc', '127.0.0.1:0', '--otlp-http', '127.0.0.1:0', '--api', '127.0.0.1:0',
    '--db', join(dir, 'faultline.db'), '--port-file', portFile, '--log-level', 'warn', ...extraArgs];
  const proc = spawn(bin, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  let exited = null;
  proc.on('exit', (code, sig) => { exited = { code, sig }; });
  const deadline = Date.now() + 20000;
  let ports = null;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`faultline exited early: ${JSON.stringify(exited)}`);
    if (existsSync(portFile)) {
      try { ports = JSON.parse(readFileSync(portFile, 'utf8')); break; } catch { /* partial */ }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!ports) throw new Error('faultline did not become ready within 20 s');
  const api = `http://127.0.0.1:${ports.api}`;
  const health = await fetch(`${api}/health`);
  if (health.status !== 200) throw new Error(`/health answered ${health.status}`);
  return {
    ports, api, dir,
    async stop() {
      if (!exited) {
        const done = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
        proc.kill('SIGTERM');
        exited = await done;
      }
      rmSync(dir, { recursive: true, force: true });
      return exited;
    },
  };
}
