import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { openRegistry, parseReference, RegistryTarget } from '../../src/registry/index.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { makeImage, pushGraph, tempDir } from './fixtures.js';

// A minimal forward proxy (CONNECT tunnels, as undici's ProxyAgent uses), counting tunnels.
let reg: TestRegistry;
let tlsReg: TestRegistry;
let proxy: http.Server;
let proxyUrl: string;
const tunnels: string[] = [];
let state: { path: string; remove(): Promise<void> };

before(async () => {
  reg = await startRegistry();
  tlsReg = await startRegistry({ tls: true });
  state = await tempDir('tarpush-state-');
  proxy = http.createServer((_req, res) => {
    res.writeHead(405).end();
  });
  proxy.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    tunnels.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    const upstream = net.connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
});
after(async () => {
  proxy?.closeAllConnections();
  await new Promise((r) => proxy?.close(r));
  await reg?.stop();
  await tlsReg?.stop();
  await state?.remove();
});

async function pushVia(host: string, env: NodeJS.ProcessEnv, extra: { caFile?: string; plainHttp?: boolean; proxyLoopback?: boolean } = {}): Promise<void> {
  const img = makeImage([2000]);
  const target = new RegistryTarget(
    openRegistry(parseReference(`${host}/proxied/app`), { env: { HOME: '/nonexistent', ...env }, stateDir: state.path, access: 'push', proxyLoopback: true, ...extra }),
  );
  try {
    await pushGraph(img.root, target, 'v');
    assert.equal(await target.remoteDigest('v'), img.manifestDesc.digest);
  } finally {
    await target.close();
  }
}

test('HTTPS_PROXY tunnels to a TLS registry, with the registry CA still applied', async () => {
  tunnels.length = 0;
  await pushVia(tlsReg.host, { HTTPS_PROXY: proxyUrl }, { caFile: tlsReg.caFile! });
  assert.ok(tunnels.length >= 1);
  assert.ok(tunnels.every((t) => t === tlsReg.host));
});

test('HTTP_PROXY is used for a plain-HTTP registry', async () => {
  tunnels.length = 0;
  await pushVia(reg.host, { HTTP_PROXY: proxyUrl }, { plainHttp: true });
  assert.ok(tunnels.length >= 1);
});

test('NO_PROXY bypasses the proxy', async () => {
  tunnels.length = 0;
  await pushVia(tlsReg.host, { HTTPS_PROXY: proxyUrl, NO_PROXY: '127.0.0.1' }, { caFile: tlsReg.caFile! });
  assert.equal(tunnels.length, 0);
});

test('loopback registries bypass the proxy unless asked (as with Docker)', async () => {
  tunnels.length = 0;
  await pushVia(tlsReg.host, { HTTPS_PROXY: 'http://127.0.0.1:1' }, { caFile: tlsReg.caFile!, proxyLoopback: false });
  assert.equal(tunnels.length, 0);
});
